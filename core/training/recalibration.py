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
from collections.abc import Callable, Iterable, Iterator, Mapping

import numpy as np
import tensorflow as tf
from absl import logging

from core.data.standard_fields import InputDataFields
from core.training.loop import HookBase
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


class BatchNormRecalibrator:
    """Recalibrates one model's batch norm, as often as asked, tracing its forward pass once.

    :func:`recalibrate_batch_norm` is one call of a new recalibrator; build one and call it
    repeatedly where a model is recalibrated many times (each candidate of a sensitivity
    analysis), so the training-mode forward pass is traced once per input size.

    Args:
      model: a built ``SegmentationModel`` (any model whose BN layers are ``ConvBN``).
    """

    def __init__(self, model):
        self._layers = _batch_norm_layers(model)
        self._moments_fn = _moments_fn(model, self._layers)

    def __call__(
        self, batches: Iterable[Mapping[str, tf.Tensor]], num_batches: int | None = None
    ) -> int:
        """Recalibrates the model in place; see :func:`recalibrate_batch_norm`."""
        if num_batches is not None and num_batches < 1:
            raise ValueError(f"num_batches must be at least 1, got {num_batches}.")
        layers = self._layers
        statistics = {scope: _Moments() for scope in layers}
        images = 0
        for index, batch in enumerate(batches):
            if num_batches is not None and index >= num_batches:
                break
            image = batch[InputDataFields.input_image]
            for scope, entries in self._moments_fn(image).items():
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


def recalibrate_batch_norm(
    model, batches: Iterable[Mapping[str, tf.Tensor]], num_batches: int | None = None
) -> int:
    """Sets every BN layer's moving statistics to the population statistics of its input.

    The model runs in training mode (BN normalises with batch statistics, as in training) with
    no optimizer and no gradient; the only variables that change are the moving means and
    variances, assigned once at the end. Layers whose BN is frozen (``batch_norm.train``
    false) normalise with their moving statistics in training too; they are left as they are.
    The result does not depend on the moving statistics it replaces.

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
    return BatchNormRecalibrator(model)(batches, num_batches)


class BatchNormRecalibrationHook(HookBase):
    """Recalibrates batch norm when a run reaches ``num_steps``, then saves the final checkpoint.

    Runs in ``after_train`` before the checkpoint hook's (``runners.train_hooks.build_hooks`` puts
    it first), so the last checkpoint of the run holds the recalibrated statistics and
    eval.py, export.py and compress.py on the logdir read them. It recalibrates only a run
    that ended normally at its last step after training at least one step:

    * a run stopped by Ctrl-C or an error is not recalibrated (its checkpoint is a point to
      resume from, and resuming continues the moving averages as before);
    * a resumed run that trains on to ``num_steps`` is recalibrated at its end, like an
      uninterrupted one (recalibration does not read the moving statistics it replaces, so
      the result is the same);
    * a run that starts at ``num_steps`` trains nothing and leaves the checkpoint as it is
      (one log line points to ``recalibrate_bn.py`` for a checkpoint trained without the
      option);
    * with ``num_steps`` 0 (train until stopped) it never runs; a warning says so.

    It is not in ``HOOKS``: it needs the run's data and checkpoint, which a hook built from
    its name alone does not have.

    Args:
      batches_fn: ``() -> iterable`` of training batches (dicts with ``input_image`` float32
        [batch, H, W, 3] in [0, 255]), called once, at the end; seeded, so the same images are
        used on every run.
      num_batches: batches to run, >= 1.
      save: ``step -> checkpoint prefix``, writes the final checkpoint (e.g.
        ``CheckpointHook.save``, which then does not save the same step again).

    Attributes:
      num_images: images used (0 until it ran).
      checkpoint: the prefix written with the recalibrated statistics, or None.
    """

    def __init__(
        self,
        batches_fn: Callable[[], Iterable[Mapping[str, tf.Tensor]]],
        num_batches: int,
        save: Callable[[int], str],
    ):
        if num_batches < 1:
            raise ValueError(f"num_batches must be at least 1, got {num_batches}.")
        self._batches_fn = batches_fn
        self.num_batches = num_batches
        self._save = save
        self.num_images = 0
        self.checkpoint: str | None = None

    def before_train(self) -> None:
        if not self.loop.num_steps:
            logging.warning(
                "num_steps is 0 (train until stopped): batch norm is never recalibrated at the "
                "end; run recalibrate_bn.py on the checkpoint you keep."
            )

    def after_train(self) -> None:
        loop = self.loop
        if loop.error is not None or not loop.done:
            return
        if loop.step <= loop.start_step:
            logging.info(
                "No step was trained (already at step %d): batch norm is not recalibrated and "
                "the checkpoint is left as it is. Run recalibrate_bn.py to recalibrate it.",
                loop.step,
            )
            return
        logging.info("Recalibrating batch norm over %d training batches", self.num_batches)
        self.num_images = recalibrate_batch_norm(
            loop.model, self._batches_fn(), num_batches=self.num_batches
        )
        self.checkpoint = self._save(loop.step)
        logging.info(
            "Checkpoint %s holds batch-norm statistics recalibrated on %d images.",
            self.checkpoint,
            self.num_images,
        )
