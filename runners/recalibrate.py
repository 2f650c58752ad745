"""What ``recalibrate_bn.py`` runs: recompute a checkpoint's batch-norm moving statistics.

Config in, files out: loads the pipeline config, restores its model from the checkpoint, runs it
over ``num_batches`` batches of the training input (the config's own preprocessing, seeded, so
the batches have the training crop size and the same images on every run) with the weights
frozen, sets every BN layer's moving mean and variance to the population statistics of its input
(:mod:`core.training.recalibration`), and writes ``<output_dir>/model.ckpt`` (same variable
names as the input, so eval.py, export.py and compress.py read it) and ``pipeline.config``.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
from absl import logging

from builders import config_util, dataset_builder, model_builder
from core.checkpoints import checkpoint_utils
from core.training.recalibration import recalibrate_batch_norm
from runners.common import load_model

CHECKPOINT_NAME = "model.ckpt"


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
