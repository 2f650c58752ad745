"""Checks of a config's input records made before any expensive work (TensorFlow, tracing).

See :mod:`core.data.record_check`: a missing, truncated or foreign record file, or a label outside
the model's classes in the first records, ends the run in about a second with one clear message
instead of failing inside the traced input pipeline. Nothing here imports TensorFlow, so the
scripts run these checks (through ``runners.cli.run_main(..., check_records=...)``) before they
import it; paths on remote file systems (``gs://...``) are left to the input pipeline.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

from core.data import record_check
from core.data.record_paths import DATASET_TOOLS_HINT, expand_patterns  # noqa: F401 - re-exported

READERS = ("train_input_reader", "eval_input_reader")


def local_input_paths(patterns: Sequence[str]) -> list[str] | None:
    """Expands record paths and globs like the input pipeline; None if one is not local.

    Raises:
      FileNotFoundError: a pattern matches no file; the message names it.
    """
    if any("://" in pattern for pattern in patterns):
        return None
    if not patterns:
        return []  # the input pipeline reports the empty list, with its own message
    return expand_patterns(patterns, exists=os.path.exists, glob=glob.glob)


def _classes(config, reader_name: str) -> tuple[int | None, int]:
    """(the model's ``num_classes``, or None when unusable; the reader's ignore label).

    Training ignores ``model.<kind>.loss.ignore_label``, evaluation ``eval_config.ignore_label``.
    """
    kind = config.model.WhichOneof("model") if config.HasField("model") else None
    model = getattr(config.model, kind) if kind else None
    num_classes = getattr(model, "num_classes", 0)
    # An invalid class count is the config validation's to report, with the field's name.
    usable = num_classes if isinstance(num_classes, int) and 1 <= num_classes <= 255 else None
    if reader_name == "eval_input_reader":
        return usable, config.eval_config.ignore_label
    loss = getattr(model, "loss", None)
    return usable, getattr(loss, "ignore_label", 255)


def check_reader_records(config, reader_name: str) -> None:
    """Checks the records of ``config.<reader_name>`` against the model's classes.

    Args:
      config: a parsed ``PipelineConfig`` (not necessarily validated yet).
      reader_name: ``"train_input_reader"`` or ``"eval_input_reader"``.

    Raises:
      FileNotFoundError: a pattern matches no file (named).
      record_check.RecordError: a truncated or foreign file, or a label out of range (named).
    """
    if reader_name not in READERS:
        raise ValueError(f"reader_name must be one of {READERS}, got {reader_name!r}")
    if not config.HasField(reader_name):
        return
    reader = getattr(config, reader_name)
    if not reader.HasField("tf_record_input_reader"):
        return  # the runner reports the missing reader with its own message
    patterns = list(reader.tf_record_input_reader.input_path)
    if not patterns:
        return  # the input pipeline reports the empty list
    paths = local_input_paths(patterns)
    if paths is None:
        return
    num_classes, ignore_label = _classes(config, reader_name)
    record_check.check_record_files(paths, num_classes=num_classes, ignore_label=ignore_label)


def check_train_records(config) -> None:
    """Checks the records of ``config.train_input_reader``; see :func:`check_reader_records`."""
    check_reader_records(config, "train_input_reader")


def check_eval_records(config) -> None:
    """Checks the records of ``config.eval_input_reader``; see :func:`check_reader_records`."""
    check_reader_records(config, "eval_input_reader")
