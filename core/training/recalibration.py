"""Batch-norm recalibration: moving statistics recomputed as population statistics, weights frozen.

A BN layer's moving mean and variance are an exponential average of batch statistics taken while
the weights were changing. After a short run, or after pruning removes channels upstream, they
lag the network they normalise, and the model evaluates far worse than it runs with batch
statistics. Recalibration ("precise BN" in detectron2; "adaptive BN" in EagleEye, ECCV 2020)
runs the frozen model in training mode over a few batches, so every BN normalises with batch
statistics exactly as in training, records each BN layer's input, and replaces the moving
statistics by the population mean and variance of that input over all pixels of all batches.

The per-batch moments are combined exactly (Chan et al.'s parallel formula, in float64), so the
variance is that of the whole population, not the mean of the batch variances.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import tensorflow as tf
from absl import logging

from core.data.standard_fields import InputDataFields
from models.layers.conv_bn import ConvBN


class _Moments:
    """Running count, mean and sum of squared deviations of one layer's input, per channel."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def add(self, count: int, mean: np.ndarray, variance: np.ndarray) -> None:
        """Merges a batch of ``count`` values per channel with this mean and (biased) variance."""
        mean = mean.astype(np.float64)
        m2 = variance.astype(np.float64) * count
        if self.mean is None:
            self.count, self.mean, self.m2 = count, mean, m2
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * count / total)
        self.count = total

    @property
    def variance(self) -> np.ndarray:
        """Population (biased) variance, as Keras BN uses for its batch variance."""
        return self.m2 / self.count


def _batch_norm_layers(model) -> dict[str, ConvBN]:
    """Every ``ConvBN`` of the model's ``scoped_layers()``, keyed by slim scope."""
    return {layer.scope: layer for layer in model.scoped_layers() if isinstance(layer, ConvBN)}


@contextlib.contextmanager
def _observing(layers: Mapping[str, ConvBN], recorded: dict[str, list]) -> Iterator[None]:
    """Sets each layer's statistics observer to append its input's moments to ``recorded``."""

    def observer(scope: str):
        def observe(inputs: tf.Tensor) -> None:
            values = tf.cast(inputs, tf.float32)
            mean = tf.reduce_mean(values, axis=[0, 1, 2])
            # Deviations from the batch mean: stable where E[x^2] - mean^2 would cancel.
            variance = tf.reduce_mean(tf.square(values - mean), axis=[0, 1, 2])
            shape = tf.shape(values, out_type=tf.int64)
            recorded.setdefault(scope, []).append((shape[0] * shape[1] * shape[2], mean, variance))

        return observe

    try:
        for scope, layer in layers.items():
            layer.statistics_observer = observer(scope)
        yield
    finally:
        for layer in layers.values():
            layer.statistics_observer = None


def _moments_fn(model, layers: Mapping[str, ConvBN]):
    """A tf.function: images [b, H, W, 3] in [0, 255] -> {scope: [(count, mean, variance)]}."""

    def moments(images: tf.Tensor) -> dict[str, list]:
        # Filled while tracing; afterwards the traced graph returns the same structure.
        recorded: dict[str, list] = {}
        with _observing(layers, recorded):
            model.predict(model.preprocess(images), training=True)
        return recorded

    return tf.function(moments, reduce_retracing=True)


def recalibrate_batch_norm(
    model, batches: Iterable[Mapping[str, tf.Tensor]], num_batches: int | None = None
) -> int:
    """Sets every BN layer's moving statistics to the population statistics of its input.

    The model runs in training mode (BN normalises with batch statistics, as in training) with
    no optimizer and no gradient; the only variables that change are the moving means and
    variances, assigned once at the end. Layers whose BN is frozen (``batch_norm.train`` false)
    normalise with their moving statistics in training too; they are left as they are.

    Args:
      model: a built ``SegmentationModel`` (any model whose BN layers are ``ConvBN``).
      batches: dicts keyed by ``InputDataFields``, each with ``input_image`` float32
        [batch, height, width, 3] in [0, 255] (the training dataset's batches).
      num_batches: use at most this many batches (None: all of them).

    Returns:
      The number of images used.

    Raises:
      ValueError: ``num_batches`` is below 1, or there is no batch.
    """
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"num_batches must be at least 1, got {num_batches}.")
    layers = _batch_norm_layers(model)
    moments_fn = _moments_fn(model, layers)
    statistics = {scope: _Moments() for scope in layers}
    images = 0
    for index, batch in enumerate(batches):
        if num_batches is not None and index >= num_batches:
            break
        image = batch[InputDataFields.input_image]
        for scope, entries in moments_fn(image).items():
            for count, mean, variance in entries:
                statistics[scope].add(int(count), mean.numpy(), variance.numpy())
        images += int(image.shape[0])
    if not images:
        raise ValueError("batch-norm recalibration got no batch: the input yielded nothing.")
    skipped = []
    for scope, layer in layers.items():
        moments = statistics[scope]
        if moments.mean is None:
            skipped.append(scope)
            continue
        bn = layer.bn
        bn.moving_mean.assign(moments.mean.astype(bn.moving_mean.dtype))
        bn.moving_variance.assign(moments.variance.astype(bn.moving_variance.dtype))
    if skipped:
        logging.info(
            "BN recalibration left %d layer(s) as they were (frozen BN or not run): %s",
            len(skipped),
            ", ".join(skipped),
        )
    logging.info(
        "Recalibrated %d batch-norm layer(s) on %d images.", len(layers) - len(skipped), images
    )
    return images
