"""Segmentation losses: softmax cross-entropy over the pixels that count.

Each model output (the main logits and, when enabled, the auxiliary ones)
gets a softmax cross-entropy against the ground truth, averaged over the
pixels whose label is not the ignore label; the total is the weighted sum of
the outputs' losses, each weight counted once. (The original added every
weighted loss *and* its unweighted twin to the total by accident, so its
effective ICNet weights were 2.0 / 1.4 / 1.4 rather than 1.0 / 0.4 / 0.4.)

By default the labels are resized to each logit map with nearest-neighbour,
align-corners sampling, as the original did: with the models' Interp sizes
(e.g. 1025 -> 257 for 1/4) this picks every 4th label pixel exactly. With
``upsample_logits`` the logits are instead resized bilinearly to the labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import tensorflow as tf

from core.data.label_checks import assert_labels_in_range


def resize_labels(labels: tf.Tensor, size: Sequence[int] | tf.Tensor) -> tf.Tensor:
    """Nearest-neighbour, align-corners resize of a label map.

    Args:
      labels: int32 ``[batch, height, width, 1]`` class ids.
      size: the target ``(height, width)``.

    Returns:
      int32 ``[batch, size[0], size[1], 1]``; only values present in ``labels``.
    """
    resized = tf.raw_ops.ResizeNearestNeighbor(
        images=labels, size=tf.cast(size, tf.int32), align_corners=True, half_pixel_centers=False
    )
    return tf.cast(resized, tf.int32)


def resize_logits(logits: tf.Tensor, size: Sequence[int] | tf.Tensor) -> tf.Tensor:
    """Bilinear, align-corners resize of logits ``[batch, h, w, classes]`` to ``size``."""
    return tf.raw_ops.ResizeBilinear(
        images=logits, size=tf.cast(size, tf.int32), align_corners=True, half_pixel_centers=False
    )


@dataclass(frozen=True)
class SoftmaxLossConfig:
    """Settings of the per-output cross-entropy.

    Attributes:
      num_classes: number of classes; labels must be in ``[0, num_classes)``
        or equal ``ignore_label``.
      ignore_label: label value excluded from the loss.
      class_weights: optional per-class weights, ``num_classes`` values.
      upsample_logits: resize logits to the labels instead of the reverse.
    """

    num_classes: int
    ignore_label: int = 255
    class_weights: tuple[float, ...] | None = None
    upsample_logits: bool = False

    def __post_init__(self):
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {self.num_classes}")
        if self.class_weights is not None and len(self.class_weights) != self.num_classes:
            raise ValueError(
                f"class_weights has {len(self.class_weights)} values for {self.num_classes} classes"
            )


def _check_labels(labels: tf.Tensor, config: SoftmaxLossConfig) -> tf.Tensor:
    valid, check = assert_labels_in_range(
        labels, config.num_classes, config.ignore_label, "loss.ignore_label"
    )
    with tf.control_dependencies([check]):
        return tf.identity(valid)


def softmax_cross_entropy(
    logits: tf.Tensor, labels: tf.Tensor, config: SoftmaxLossConfig
) -> tf.Tensor:
    """Mean softmax cross-entropy over the non-ignored pixels.

    Args:
      logits: float ``[batch, h, w, num_classes]``.
      labels: int ``[batch, H, W, 1]`` class ids, ``ignore_label`` allowed.
      config: the loss settings.

    Returns:
      A float32 scalar: ``sum(weight * ce) / (number of non-ignored pixels)``,
      0 when every pixel is ignored. Without class weights this is the plain
      mean over the counted pixels.
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    if config.upsample_logits:
        logits = resize_logits(logits, tf.shape(labels)[1:3])
    else:
        labels = resize_labels(labels, tf.shape(logits)[1:3])
    labels = labels[..., 0]
    valid = _check_labels(labels, config)
    safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels, logits=logits)
    weights = tf.cast(valid, tf.float32)
    if config.class_weights is not None:
        weights *= tf.gather(tf.constant(config.class_weights, tf.float32), safe_labels)
    count = tf.reduce_sum(tf.cast(valid, tf.float32))
    return tf.math.divide_no_nan(tf.reduce_sum(per_pixel * weights), count)


@dataclass(frozen=True)
class WeightedLoss:
    """The weighted sum of per-output cross-entropies.

    Attributes:
      config: the cross-entropy settings shared by every output.
      weights: output key (as in the model's ``predict`` dict) -> loss weight.
        Outputs missing from the dict the model returns are skipped, so one
        loss serves training (with auxiliary outputs) and evaluation.
    """

    config: SoftmaxLossConfig
    weights: Mapping[str, float]

    def __call__(self, outputs: Mapping[str, tf.Tensor], labels: tf.Tensor) -> dict[str, tf.Tensor]:
        """Computes each output's loss and the weighted total.

        Args:
          outputs: the model's ``predict`` dict of logits.
          labels: int ``[batch, H, W, 1]`` ground truth.

        Returns:
          ``{key: unweighted loss}`` for every weighted output present, plus
          ``"total"``: the sum of weight x loss.
        """
        losses = {}
        total = tf.constant(0.0, tf.float32)
        for key, weight in self.weights.items():
            if key not in outputs or weight == 0:
                continue
            losses[key] = softmax_cross_entropy(outputs[key], labels, self.config)
            total += weight * losses[key]
        if not losses:
            raise ValueError(
                f"none of the loss outputs {sorted(self.weights)} is in the model's outputs "
                f"{sorted(outputs)}"
            )
        losses["total"] = total
        return losses
