"""What ``recalibrate_bn.py`` runs: recompute a checkpoint's batch-norm moving statistics.

Config in, files out: loads the pipeline config, restores its model from the checkpoint, runs it
over ``num_batches`` batches of the training input (the config's own preprocessing, seeded, so
the batches have the training crop size and the same images on every run) with the weights
frozen, sets every BN layer's moving mean and variance to the population statistics of its input
(:mod:`core.training.recalibration`), and writes ``<output_dir>/model.ckpt`` (same variable
names as the input, so eval.py, export.py and compress.py read it) and ``pipeline.config``.

:func:`resolve_num_batches` and :func:`make_recalibrator` are the same step for compress.py and
sensitivity.py, whose flag defaults to "on when the config has training data".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow as tf
from absl import logging

from builders import config_util, dataset_builder, model_builder
from core.checkpoints import checkpoint_utils
from core.data.input_pipeline import expand_input_paths
from core.training.recalibration import BatchNormRecalibrator, recalibrate_batch_norm
from runners.common import load_model

CHECKPOINT_NAME = "model.ckpt"
# Batches run when a flag is left at its default and the config has training data: a few
# hundred images at the usual batch sizes, enough for stable population statistics.
DEFAULT_NUM_BATCHES = 50


@dataclasses.dataclass(frozen=True)
class RecalibrationOutput:
    """What :func:`recalibrate` wrote and how many images it used."""

    checkpoint: str
    pipeline_config: str
    num_images: int


def training_batches(config, batch_size: int, seed: int) -> tf.data.Dataset:
    """The training input of ``config`` with its preprocessing, seeded, repeated forever.

    Raises:
      ValueError: the config has no train_input_reader.
      FileNotFoundError: the records do not exist.
    """
    if not config.HasField("train_input_reader"):
        raise ValueError(
            "the config has no train_input_reader, and recalibration runs on training images; "
            "add train_input_reader { tf_record_input_reader { input_path: '...' } }."
        )
    _, model_config = model_builder.model_config(config)
    ignore_label = model_config.loss.ignore_label
    return dataset_builder.build_train_dataset(config, batch_size, ignore_label, seed)


def missing_train_input(config) -> str | None:
    """None when the config's ``train_input_reader`` names existing records; else why not."""
    if not config.HasField("train_input_reader"):
        return "the config has no train_input_reader"
    paths = list(config.train_input_reader.tf_record_input_reader.input_path)
    if not paths:
        return "train_input_reader has no tf_record_input_reader.input_path"
    try:
        expand_input_paths(paths)
    except FileNotFoundError as error:
        return str(error)
    return None


def resolve_num_batches(config, requested: int | None, flag: str) -> tuple[int, str]:
    """How many batches a recalibration flag asks for, and why none when it is 0.

    Args:
      config: the ``PipelineConfig`` whose training input would be used.
      requested: the flag's value: None (default: :data:`DEFAULT_NUM_BATCHES` when the config
        has training records, else none), 0 (off) or a count (records required).
      flag: the flag's name for messages, e.g. ``--recalibrate_bn_batches``.

    Returns:
      ``(num_batches, reason)``: ``num_batches`` 0 with the reason it does not run, or the
      count with an empty reason.

    Raises:
      ValueError: a negative count, or a count > 0 and no training records (named).
    """
    if requested is not None and requested < 0:
        raise ValueError(f"{flag} must be >= 0 (0: off), got {requested}.")
    if requested == 0:
        return 0, f"{flag}=0"
    missing = missing_train_input(config)
    if missing is None:
        return requested or DEFAULT_NUM_BATCHES, ""
    if requested is None:
        return 0, missing
    raise ValueError(
        f"{flag}={requested} recalibrates batch norm on training images, but {missing}. Add "
        "train_input_reader { tf_record_input_reader { input_path: '...' } } to the config, "
        f"or pass {flag}=0."
    )


def make_recalibrator(model, config, num_batches: int, *, seed: int = 0) -> Callable[[], int]:
    """``() -> images used``: recalibrates ``model`` in place over seeded training batches.

    Each call runs ``num_batches`` batches of ``train_config.batch_size`` images with the
    config's training preprocessing, rebuilt from the same seed, so every call sees the same
    images; the forward pass is traced once for all calls.

    Raises:
      ValueError: ``train_config.batch_size`` below 1, or no train_input_reader.
    """
    batch_size = config.train_config.batch_size
    if batch_size < 1:
        raise ValueError(f"train_config.batch_size must be at least 1, got {batch_size}.")
    recalibrator = BatchNormRecalibrator(model)

    def recalibrate_once() -> int:
        dataset = training_batches(config, batch_size, seed)
        return recalibrator(iter(dataset), num_batches)

    return recalibrate_once


def recalibrate(
    *,
    config_path: str,
    input_checkpoint: str,
    output_dir: str,
    num_batches: int = 50,
    batch_size: int | None = None,
    seed: int = 0,
) -> RecalibrationOutput:
    """Recalibrates the BN statistics of ``input_checkpoint`` and writes the result.

    Args:
      config_path: pipeline config the checkpoint was trained with (its train_input_reader
        and preprocessing give the images).
      input_checkpoint: checkpoint prefix or training directory.
      output_dir: folder for ``model.ckpt`` and ``pipeline.config``.
      num_batches: batches of training images to run, >= 1.
      batch_size: images per batch (default: ``train_config.batch_size``), >= 1.
      seed: seed of the input order and augmentation.

    Raises:
      ConfigError, CheckpointError, ValueError, FileNotFoundError: with the file, flag or
        field named.
    """
    if not output_dir:
        raise ValueError("--output_dir is required: the directory for model.ckpt.")
    if num_batches < 1:
        raise ValueError(f"--num_batches must be at least 1, got {num_batches}.")
    pipeline = config_util.load_pipeline_config(config_path)
    batch_size = batch_size or pipeline.train_config.batch_size
    if batch_size < 1:
        raise ValueError(
            f"--batch_size must be at least 1, got {batch_size} (set --batch_size, or "
            f"train_config.batch_size in {config_path})."
        )
    dataset = training_batches(pipeline, batch_size, seed)
    model, prefix = load_model(pipeline, input_checkpoint)
    logging.info(
        "Recalibrating batch norm of %s on %d batches of %d images", prefix, num_batches, batch_size
    )
    num_images = recalibrate_batch_norm(model, iter(dataset), num_batches=num_batches)
    checkpoint = checkpoint_utils.write_model_checkpoint(
        model, output_dir, CHECKPOINT_NAME, step=checkpoint_utils.checkpoint_step(prefix) or 0
    )
    config_out = config_util.write_pipeline_config(pipeline, output_dir)
    return RecalibrationOutput(checkpoint, config_out, num_images)
