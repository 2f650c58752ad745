"""Checks of a config's input records made before any expensive work (tracing, training).

See :mod:`core.data.record_check`: a truncated or foreign record file, or a label outside the
model's classes in the first records, ends the run in a second with one clear message instead of
failing inside the traced input pipeline.
"""

from __future__ import annotations

from builders.model_builder import model_config
from core.data import record_check
from core.data.input_pipeline import expand_input_paths


def check_train_records(config) -> None:
    """Checks the records of ``config.train_input_reader`` against the model's classes.

    Args:
      config: a validated ``PipelineConfig``.

    Raises:
      FileNotFoundError: a pattern matches no file (named).
      record_check.RecordError: a truncated or foreign file, or a label out of range (named).
    """
    reader = config.train_input_reader
    if not reader.HasField("tf_record_input_reader"):
        return  # the trainer reports the missing reader with its own message
    model = model_config(config)[1]
    record_check.check_record_files(
        expand_input_paths(list(reader.tf_record_input_reader.input_path)),
        num_classes=model.num_classes,
        ignore_label=model.loss.ignore_label,
    )
