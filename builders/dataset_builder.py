"""Builds the ``tf.data`` input pipeline from ``InputReader`` / ``EvalConfig`` protos.

The datasets yield batched dictionaries keyed by
:class:`core.data.standard_fields.InputDataFields` (see :mod:`core.data.input_pipeline`,
which holds the pipeline itself; this module only reads the configs).
"""

from __future__ import annotations

import tensorflow as tf
from absl import logging

from builders import preprocessor_builder
from core.data.input_pipeline import (
    DATASET_TOOLS_HINT,
    PreprocessFn,
    eval_preprocess_fn,
    expand_input_paths,
    make_dataset,
)
from core.data.standard_fields import IGNORE_LABEL
from protos import eval_pb2, input_reader_pb2, pipeline_pb2

# --------------------------------------------------------------------------- builders


def _reader_settings(config: input_reader_pb2.InputReader) -> tuple[list[str], int, int | None]:
    """Validates the reader fields; returns (files, num_readers, num_parallel_calls)."""
    if not config.HasField("tf_record_input_reader"):
        raise ValueError(
            f"input reader config has no tf_record_input_reader; add "
            f"tf_record_input_reader {{ input_path: '...' }}. {DATASET_TOOLS_HINT}"
        )
    files = expand_input_paths(list(config.tf_record_input_reader.input_path))
    if config.num_readers < 1:
        raise ValueError(f"input reader num_readers must be >= 1, got {config.num_readers}.")
    # The proto default (1) would decode serially. An explicit value is honoured;
    # an unset field lets tf.data size the map to the machine (AUTOTUNE).
    num_parallel_calls = None
    if config.HasField("num_parallel_calls"):
        if config.num_parallel_calls < 1:
            raise ValueError(
                f"input reader num_parallel_calls must be >= 1, got {config.num_parallel_calls}."
            )
        num_parallel_calls = config.num_parallel_calls
    if config.num_epochs:
        logging.info(
            "input reader num_epochs (%d) is ignored: training repeats the data until "
            "train_config.num_steps, evaluation makes one pass.",
            config.num_epochs,
        )
    logging.info("Reading %d record file(s): %s", len(files), ", ".join(files[:5]))
    return files, config.num_readers, num_parallel_calls


def build(
    input_reader_config: input_reader_pb2.InputReader,
    batch_size: int,
    preprocess_fn: PreprocessFn | None = None,
    is_training: bool = True,
    num_epochs: int | None = None,
    ignore_label: int = IGNORE_LABEL,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Builds the input dataset of a ``train_input_reader`` (or any reader).

    Args:
      input_reader_config: an ``InputReader`` message.
      batch_size: examples per batch (``train_config.batch_size``, or the
        per-replica batch under a distribution strategy), >= 1.
      preprocess_fn: per-example ``(image, label) -> (image, label)``, e.g.
        ``preprocessor_builder.build(train_config.preprocessor_step)``.
      is_training: shuffle (if ``shuffle`` is true in the config), repeat
        forever and drop the last partial batch. Otherwise one ordered pass
        with the last partial batch kept.
      num_epochs: overrides the number of passes (None: forever when training,
        1 otherwise).
      ignore_label: label value for batch padding.
      seed: makes shuffling and augmentation reproducible (see :func:`make_dataset`).

    Returns:
      A ``tf.data.Dataset`` of dicts keyed by ``InputDataFields`` (module docstring).

    Raises:
      FileNotFoundError: an input path matches no file.
      ValueError: an invalid config value or argument (named in the message).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be >= 1 or None (forever), got {num_epochs}.")
    files, num_readers, num_parallel_calls = _reader_settings(input_reader_config)
    shuffle = is_training and input_reader_config.shuffle
    if shuffle and input_reader_config.shuffle_buffer < 1:
        raise ValueError(
            f"input reader shuffle_buffer must be >= 1 when shuffle is true, got "
            f"{input_reader_config.shuffle_buffer}; set shuffle: false to disable shuffling."
        )
    if num_epochs is None and not is_training:
        num_epochs = 1
    return make_dataset(
        files,
        batch_size=batch_size,
        preprocess_fn=preprocess_fn,
        shuffle=shuffle,
        shuffle_buffer=input_reader_config.shuffle_buffer,
        num_readers=num_readers,
        num_parallel_calls=num_parallel_calls,
        num_epochs=num_epochs,
        drop_remainder=is_training,
        ignore_label=ignore_label,
        seed=seed,
        # Training order only needs to be reproducible when a seed asks for it.
        deterministic=seed is not None or not is_training,
    )


def build_train_dataset(
    config: pipeline_pb2.PipelineConfig, batch_size: int, ignore_label: int, seed: int | None
) -> tf.data.Dataset:
    """The config's training batches: its train reader with its preprocessing steps, repeated.

    What ``train.py`` trains on and what batch-norm recalibration runs over. The caller checks
    that ``config`` has a ``train_input_reader`` (its message says what the data is for).

    Raises:
      FileNotFoundError: the records do not exist.
    """
    preprocess = preprocessor_builder.build(config.train_config.preprocessor_step, ignore_label)
    return build(
        config.train_input_reader,
        batch_size,
        preprocess,
        is_training=True,
        ignore_label=ignore_label,
        seed=seed,
    )


def build_eval_dataset(
    input_reader_config: input_reader_pb2.InputReader,
    eval_config: eval_pb2.EvalConfig,
    num_epochs: int = 1,
) -> tf.data.Dataset:
    """Builds the evaluation dataset: batch 1, no shuffling, ``num_epochs`` ordered passes.

    ``eval_config.eval_input_type`` selects ``padded_eval_input`` (pad
    bottom/right to its height/width: image 0, label ``eval_config.ignore_label``)
    or ``cropped_eval_input`` (centre crop; the original took a random one);
    unset leaves images as they are. ``input_image_height``/``_width`` keep the
    decoded size, so padded predictions can be cropped back with ``[:h, :w]``.

    Args:
      input_reader_config: the ``eval_input_reader`` message.
      eval_config: the ``eval_config`` message.
      num_epochs: passes over the data.

    Returns:
      A ``tf.data.Dataset`` of dicts keyed by ``InputDataFields``, batch size 1.
    """
    input_type = eval_config.eval_input_type.WhichOneof("eval_input_type_oneof")
    height = width = 0
    if input_type is not None:
        size = getattr(eval_config.eval_input_type, input_type)
        height, width = size.height, size.width
    transform = eval_preprocess_fn(input_type, height, width, eval_config.ignore_label)
    files, num_readers, num_parallel_calls = _reader_settings(input_reader_config)
    return make_dataset(
        files,
        batch_size=1,
        preprocess_fn=transform,
        shuffle=False,
        num_readers=num_readers,
        num_parallel_calls=num_parallel_calls,
        num_epochs=num_epochs,
        drop_remainder=False,
        ignore_label=eval_config.ignore_label,
        deterministic=True,
    )
