"""TensorBoard summaries of a training run, written from the host between steps.

Tags (the original's families):
  ``Losses/<output>``: each unweighted per-output loss (``logits``, ``aux_logits_1_16`` ...).
  ``Losses/regularization_loss``: the weight-decay term (when it is added).
  ``Losses/TotalLoss``: what the gradients are taken of.
  ``LearningRate/learning_rate``: the rate of the step.
  ``Performance/steps_per_sec``: training speed since the previous summary.
  with image summaries, ``VerifyTrainImages/Images``, ``/Groundtruths`` and ``/Predictions``:
    the first inputs of the batch, their labels and the model's prediction, coloured with the
    official Cityscapes palette (ignored pixels black). The original's version of these read
    flattened tensors and was broken.

The events are written with ``tf.summary.write`` and the metadata of TensorBoard's scalar and
image plugins, which is what ``tf.summary.scalar`` / ``image`` emit; those two functions live in
the ``tensorboard`` package, which training does not need (only viewing does).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from core.visualization import colorize

TOTAL_LOSS_TAG = "Losses/TotalLoss"
LEARNING_RATE_TAG = "LearningRate/learning_rate"
REGULARIZATION_TAG = "Losses/regularization_loss"
IMAGE_TAGS = (
    "VerifyTrainImages/Images",
    "VerifyTrainImages/Groundtruths",
    "VerifyTrainImages/Predictions",
)


def _metadata(plugin: str, data_class: int) -> summary_pb2.SummaryMetadata:
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin),
        data_class=data_class,
    )


_SCALAR = _metadata("scalars", summary_pb2.DATA_CLASS_SCALAR)
_IMAGE = _metadata("images", summary_pb2.DATA_CLASS_BLOB_SEQUENCE)


def write_scalar(tag: str, value: float, step: int) -> None:
    """``tf.summary.scalar`` without TensorBoard installed."""
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=_SCALAR)


def write_images(tag: str, images: np.ndarray, step: int) -> None:
    """``tf.summary.image`` without TensorBoard installed: uint8 RGB ``[n, H, W, 3]`` as PNGs."""
    images = np.asarray(images, dtype=np.uint8)
    height, width = images.shape[1:3]
    encoded = [tf.io.encode_png(image) for image in images]
    # The image plugin's layout: width, height, then one encoded image per entry.
    blobs = tf.stack([tf.as_string(width), tf.as_string(height), *encoded])
    tf.summary.write(tag, blobs, step=step, metadata=_IMAGE)


def loss_tag(key: str) -> str:
    """The tag of one loss of the ``losses`` dict of a step."""
    if key == "total":
        return TOTAL_LOSS_TAG
    if key == "regularization":
        return REGULARIZATION_TAG
    return f"Losses/{key}"


def colorize_batch(labels: np.ndarray) -> np.ndarray:
    """Class ids ``[batch, height, width(, 1)]`` -> uint8 RGB ``[batch, height, width, 3]``."""
    labels = np.asarray(labels)
    if labels.ndim == 4:
        labels = labels[..., 0]
    return np.stack([colorize(np.clip(label, 0, 255)) for label in labels])


class SummaryWriter:
    """Writes scalars and images to ``directory``; does nothing when ``enabled`` is False.

    Args:
      directory: the event files' directory (the training logdir).
      enabled: False on non-chief workers of a multi-worker run.
    """

    def __init__(self, directory: str, enabled: bool = True):
        if enabled:
            self._writer = tf.summary.create_file_writer(directory)
        else:
            self._writer = tf.summary.create_noop_writer()

    def scalars(self, step: int, losses: Mapping[str, float], learning_rate: float, speed=None):
        """Writes the losses (``{key: value}``), the learning rate and the speed at ``step``."""
        with self._writer.as_default():
            for key, value in losses.items():
                write_scalar(loss_tag(key), value, step)
            write_scalar(LEARNING_RATE_TAG, learning_rate, step)
            if speed is not None:
                write_scalar("Performance/steps_per_sec", speed, step)

    def images(
        self, step: int, images: np.ndarray, labels: np.ndarray, predictions: np.ndarray
    ) -> None:
        """Writes inputs, ground truth and predictions.

        Args:
          step: the global step.
          images: float ``[n, H, W, 3]`` in [0, 255].
          labels: int ``[n, H, W, 1]`` class ids (ignore label included).
          predictions: int ``[n, H, W]`` class ids.
        """
        panels = (
            np.clip(np.asarray(images), 0, 255).astype(np.uint8),
            colorize_batch(labels),
            colorize_batch(predictions),
        )
        with self._writer.as_default():
            for tag, panel in zip(IMAGE_TAGS, panels, strict=True):
                write_images(tag, panel, step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
