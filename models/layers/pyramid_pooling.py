"""Pyramid pooling: PSPNet's module (pool, 1x1 conv, upsample, concatenate, 3x3 conv) and ICNet's
fast variant (pool, upsample, sum, 1x1 conv).

Both pool with ``kernel = stride = (int(h / f), int(w / f))`` and 'VALID' padding for each pooling
factor ``f``, as the original did. This is not adaptive pooling: a 33x65 map with f=3 gives 3x3
bins of 11x21 pixels and drops the last 2 columns. The kernel is a graph constant, so the feature
map's height and width must be known when the model is traced (build or export with a fixed
input size).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from models.hyperparams import ConvHyperparams
from models.layers.conv_bn import ConvBN
from models.layers.interp import resize_bilinear
from models.widths import WidthResolver


def _static_hw(features: tf.Tensor, who: str) -> tuple[int, int]:
    height, width = features.shape[1], features.shape[2]
    if height is None or width is None:
        raise ValueError(
            f"{who} needs a static feature-map size to choose its pooling kernels, got shape "
            f"{features.shape}. Build, trace or export the model with a fixed input height and "
            "width (e.g. a TensorSpec [1, 1025, 2049, 3])."
        )
    return int(height), int(width)


def pool_kernel(height: int, width: int, factor: float, who: str = "pyramid pooling") -> tuple:
    """Kernel (= stride) of one pyramid level: (int(height / factor), int(width / factor)).

    Raises:
      ValueError: if the map is smaller than ``factor`` in a dimension (the kernel would be 0).
    """
    kernel = (int(height / factor), int(width / factor))
    if kernel[0] < 1 or kernel[1] < 1:
        raise ValueError(
            f"{who}: the {height}x{width} feature map is too small for pooling factor {factor} "
            f"(kernel {kernel}). Use a larger input or smaller pooling_factors."
        )
    return kernel


def average_pool(features: tf.Tensor, kernel: tuple[int, int]) -> tf.Tensor:
    """'VALID' average pooling with kernel = stride; [b, h, w, c] -> [b, h // kh, w // kw, c]."""
    return tf.nn.avg_pool2d(features, ksize=kernel, strides=kernel, padding="VALID")


def fast_pyramid_pool_sum(
    features: tf.Tensor, pooling_factors: Sequence[float], chained_adds: bool = True
) -> tf.Tensor:
    """ICNet's parameter-free pyramid: the input plus every pooled-and-upsampled level.

    Args:
      features: float32 [batch, height, width, channels] with static height and width.
      pooling_factors: e.g. (1, 2, 3, 4): level ``f`` pools to about f x f bins.
      chained_adds: sum with binary Add ops (what the original emitted for mobile targets) instead
        of one AddN.

    Returns:
      float32 [batch, height, width, channels].
    """
    height, width = _static_hw(features, "FastPSPModule")
    levels = [features]
    for factor in pooling_factors:
        pooled = average_pool(features, pool_kernel(height, width, factor, "FastPSPModule"))
        levels.append(resize_bilinear(pooled, (height, width)))
    if not chained_adds:
        return tf.add_n(levels)
    total = levels[0]
    for level in levels[1:]:
        total = tf.add(total, level)
    return total


def _checked_factors(pooling_factors: Sequence[float]) -> tuple[float, ...]:
    """The pyramid levels as a tuple; a pyramid needs at least one level, each positive."""
    if not pooling_factors or any(f <= 0 for f in pooling_factors):
        raise ValueError(f"pooling_factors must be positive numbers, got {pooling_factors!r}.")
    return tuple(pooling_factors)


class FastPyramidPooling(keras.layers.Layer):
    """ICNet's fast PSP module: :func:`fast_pyramid_pool_sum`, then ``FastPSPModule/Conv``.

    Args:
      pooling_factors: pyramid levels, e.g. (1, 2, 3, 4).
      widths: width resolver; the 1x1 conv has 512 nominal filters and is compressible.
      hyperparams: head hyperparams (the conv uses relu6).
      chained_adds: see :func:`fast_pyramid_pool_sum`.
      sync_batch_norm: synchronise BN across replicas.

    Call args:
      features: float32 [batch, height, width, channels] (block4 output, 2048 channels at 1.0).

    Returns:
      float32 [batch, height, width, 512 * filter_scale].
    """

    def __init__(
        self,
        pooling_factors: Sequence[float],
        widths: WidthResolver,
        hyperparams: ConvHyperparams,
        chained_adds: bool = True,
        sync_batch_norm: bool = False,
    ):
        super().__init__(name="FastPSPModule")
        self.pooling_factors = _checked_factors(pooling_factors)
        self.chained_adds = chained_adds
        scope = "FastPSPModule/Conv"
        self.conv = ConvBN(
            scope,
            widths.width(scope, 512),
            1,
            hyperparams,
            activation="relu6",
            sync_batch_norm=sync_batch_norm,
        )

    def call(self, features: tf.Tensor, training: bool = False) -> tf.Tensor:
        summed = fast_pyramid_pool_sum(features, self.pooling_factors, self.chained_adds)
        return self.conv(summed, training=training)

    def scoped_layers(self) -> list[ConvBN]:
        return [self.conv]


class PyramidPoolingModule(keras.layers.Layer):
    """PSPNet's pyramid pooling module (scope ``PSPModule``).

    For each factor: average pool, 1x1 conv with 512 filters + BN + relu6 (``PSPModule/Conv``,
    ``Conv_1`` ...; the original never compressed these), bilinear upsample back. The input and the
    levels are concatenated, input first (the pruner relies on this order), and a 3x3 conv with 512
    filters + BN + relu6 (``PSPModule/Conv_<n>``, compressible) fuses them.

    Args:
      pooling_factors: pyramid levels, (1, 2, 3, 6) in PSPNet.
      widths: width resolver.
      hyperparams: head hyperparams.
      sync_batch_norm: synchronise BN across replicas.

    Call args:
      features: float32 [batch, height, width, channels] (block4 output).

    Returns:
      float32 [batch, height, width, 512 * filter_scale].
    """

    def __init__(
        self,
        pooling_factors: Sequence[float],
        widths: WidthResolver,
        hyperparams: ConvHyperparams,
        sync_batch_norm: bool = False,
    ):
        super().__init__(name="PSPModule")
        self.pooling_factors = _checked_factors(pooling_factors)
        self.branches = []
        for index in range(len(self.pooling_factors)):
            scope = "PSPModule/Conv" if index == 0 else f"PSPModule/Conv_{index}"
            self.branches.append(
                ConvBN(
                    scope,
                    widths.width(scope, 512, scalable=False),
                    1,
                    hyperparams,
                    activation="relu6",
                    sync_batch_norm=sync_batch_norm,
                )
            )
        scope = f"PSPModule/Conv_{len(self.pooling_factors)}"
        self.fuse = ConvBN(
            scope,
            widths.width(scope, 512),
            3,
            hyperparams,
            activation="relu6",
            sync_batch_norm=sync_batch_norm,
        )

    def call(self, features: tf.Tensor, training: bool = False) -> tf.Tensor:
        height, width = _static_hw(features, "PSPModule")
        levels = [features]
        for factor, conv in zip(self.pooling_factors, self.branches, strict=True):
            pooled = average_pool(features, pool_kernel(height, width, factor, "PSPModule"))
            levels.append(resize_bilinear(conv(pooled, training=training), (height, width)))
        return self.fuse(tf.concat(levels, axis=-1), training=training)

    def scoped_layers(self) -> list[ConvBN]:
        return [*self.branches, self.fuse]
