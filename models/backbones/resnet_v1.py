"""Dilated ResNet-50 v1 in the TF-slim layout (output stride 8), split in two stages for ICNet.

Layout, as slim's ``resnet_v1_50`` so that its ImageNet checkpoint loads by name:
  root: ``conv1`` 7x7/2 (explicit symmetric padding) + BN + ReLU, ``pool1`` 3x3/2 max pool 'SAME'.
  blocks 1-4: 3/4/6/3 bottleneck units of base depth 64/128/256/512 (output 4x the base).
  bottleneck: ``conv1`` 1x1, ``conv2`` 3x3 with the unit's stride and rate, ``conv3`` 1x1 to 4x
    the base (BN, no ReLU); shortcut = ``shortcut`` 1x1 conv + BN (with the stride) in each block's
    first unit, where the depth changes, else the identity (subsampled when strided); ReLU of the
    sum. Convs have no biases; every conv is followed by BN.
  strides: the *last* unit of block 1 has stride 2 (slim v1 puts the stride at the end of a block);
    blocks 2-4 keep the stride-8 resolution and dilate block 3 by 2 and block 4 by 4.

Dilation follows the PSPNet paper (rates 2 and 4), which is also what slim's own ``output_stride=8``
gives. The original passed an explicit rate on top of slim's, which probably multiplied them to 4
and 16 (see docs/models.md); ``atrous_rates`` can reproduce that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import keras
import tensorflow as tf

from models.backbones.base import Backbone
from models.hyperparams import ConvHyperparams, slim_resnet_hyperparams
from models.layers.conv_bn import ConvBN
from models.recompute import run_chain
from models.registry import BACKBONES
from models.widths import WidthResolver

if TYPE_CHECKING:
    from core.pruning.dependency import ChannelGraph, ChannelGroup

# ImageNet RGB mean subtracted by slim's VGG/ResNet preprocessing.
RGB_MEAN = (123.68, 116.779, 103.939)
SLIM_SCOPE = "resnet_v1_50"
# The original's ``feature_extractor.type`` of this backbone.
REGISTERED_NAME = "dilated_resnet50"
# (base depth, number of units) per block.
BLOCKS = ((64, 3), (128, 4), (256, 6), (512, 3))


class Bottleneck(keras.layers.Layer):
    """One slim ``bottleneck_v1`` unit.

    Args:
      scope: ``<prefix>/blockN/unit_M/bottleneck_v1``.
      base_depth: nominal bottleneck width (the unit outputs 4x this).
      in_depth: channels of the unit's input (to check identity shortcuts).
      stride: stride of ``conv2`` and of the shortcut.
      rate: dilation of ``conv2``.
      projection: whether the unit has a ``shortcut`` conv (first unit of each block).
      widths, hyperparams, sync_batch_norm: as in :class:`DilatedResNet50`.

    Call args:
      inputs: float32 [batch, h, w, in_depth].

    Returns:
      float32 [batch, ceil(h / stride), ceil(w / stride), out_depth].
    """

    def __init__(
        self,
        scope: str,
        base_depth: int,
        in_depth: int,
        stride: int,
        rate: int,
        projection: bool,
        widths: WidthResolver,
        hyperparams: ConvHyperparams,
        sync_batch_norm: bool = False,
    ):
        super().__init__(name=scope.replace("/", "."))
        self.stride = stride

        def conv(name, depth, kernel, **kwargs):
            full = f"{scope}/{name}"
            return ConvBN(
                full,
                widths.width(full, depth),
                kernel,
                hyperparams,
                padding="explicit",
                sync_batch_norm=sync_batch_norm,
                **kwargs,
            )

        self.shortcut = conv("shortcut", 4 * base_depth, 1, stride=stride) if projection else None
        self.conv1 = conv("conv1", base_depth, 1, activation="relu")
        self.conv2 = conv("conv2", base_depth, 3, stride=stride, rate=rate, activation="relu")
        self.conv3 = conv("conv3", 4 * base_depth, 1)
        self.out_depth = self.conv3.filters
        skip_depth = self.shortcut.filters if projection else in_depth
        if skip_depth != self.out_depth:
            source = self.shortcut.scope if projection else "the unit's input"
            raise ValueError(
                f"{self.conv3.scope} has {self.out_depth} filters but {source} has {skip_depth} "
                "channels; the residual sum needs equal widths. Fix layer_widths so that every "
                "conv3 of a block matches the block's shortcut width."
            )

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        if self.shortcut is not None:
            shortcut = self.shortcut(inputs, training=training)
        elif self.stride > 1:
            # slim's subsample: a 1x1 max pool with stride, i.e. every stride-th pixel.
            shortcut = inputs[:, :: self.stride, :: self.stride, :]
        else:
            shortcut = inputs
        residual = self.conv1(inputs, training=training)
        residual = self.conv2(residual, training=training)
        residual = self.conv3(residual, training=training)
        # quantize_sum: identity unless quantization-aware training is on.
        return self.conv3.quantize_sum(tf.nn.relu(shortcut + residual), training)

    def scoped_layers(self) -> list[ConvBN]:
        layers = [self.conv1, self.conv2, self.conv3]
        return ([self.shortcut] if self.shortcut is not None else []) + layers


class DilatedResNet50(Backbone):
    """ResNet-50 v1, output stride 8, with endpoints ``block1`` .. ``block4``.

    Args:
      widths: resolves each conv's width from filter_scale and layer_widths; every conv is
        compressible (the root conv included, as the original's pruner pruned it).
      hyperparams: backbone hyperparams, normally :func:`slim_resnet_hyperparams`.
      scope_prefix: slim scope of the network, ``SharedFeatureExtractor/resnet_v1_50`` in the
        segmentation models.
      atrous_rates: dilation of blocks 3 and 4; (2, 4) as in PSPNet, (4, 16) as the original
        probably ran.
      sync_batch_norm: synchronise BN across replicas.
    """

    early_endpoint = "block1"
    final_endpoint = "block4"
    default_aux_endpoint = "block2"
    late_endpoints = ("block2", "block3", "block4")

    def __init__(
        self,
        widths: WidthResolver,
        hyperparams: ConvHyperparams,
        scope_prefix: str = f"SharedFeatureExtractor/{SLIM_SCOPE}",
        atrous_rates: Sequence[int] = (2, 4),
        sync_batch_norm: bool = False,
    ):
        super().__init__(name="resnet_v1_50")
        if len(atrous_rates) != 2 or any(int(r) < 1 for r in atrous_rates):
            raise ValueError(
                f"atrous_rates must be two rates >= 1 (block3, block4), got {atrous_rates!r}."
            )
        self.scope_prefix = scope_prefix
        self.root = ConvBN(
            f"{scope_prefix}/conv1",
            widths.width(f"{scope_prefix}/conv1", 64),
            7,
            hyperparams,
            stride=2,
            padding="explicit",
            activation="relu",
            sync_batch_norm=sync_batch_norm,
        )
        self.pool = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")
        # Stride of the last unit and rate of every unit in each block, for output stride 8.
        block_strides = (2, 1, 1, 1)
        block_rates = (1, 1, int(atrous_rates[0]), int(atrous_rates[1]))
        in_depth = self.root.filters
        # A flat list, so Keras tracks every unit; block i is units[_block_slices[i]].
        self.units: list[Bottleneck] = []
        self._block_slices: list[slice] = []
        for index, (base_depth, num_units) in enumerate(BLOCKS):
            units = []
            for unit in range(num_units):
                last = unit == num_units - 1
                units.append(
                    Bottleneck(
                        f"{scope_prefix}/block{index + 1}/unit_{unit + 1}/bottleneck_v1",
                        base_depth,
                        in_depth,
                        stride=block_strides[index] if last else 1,
                        rate=block_rates[index],
                        projection=unit == 0,
                        widths=widths,
                        hyperparams=hyperparams,
                        sync_batch_norm=sync_batch_norm,
                    )
                )
                in_depth = units[-1].out_depth
            self._block_slices.append(slice(len(self.units), len(self.units) + num_units))
            self.units.extend(units)

    def _run_block(self, index: int, x: tf.Tensor, training: bool) -> tf.Tensor:
        steps = [
            (self._unit_scope(unit), lambda y, unit=unit: unit(y, training=training))
            for unit in self.units[self._block_slices[index]]
        ]
        return run_chain(steps, x, self.recompute_groups)

    def _unit_scope(self, unit: Bottleneck) -> str:
        return unit.conv1.scope.rsplit("/", 2)[0]  # <prefix>/blockN/unit_M

    def _block_scope(self, index: int) -> str:
        return f"{self.scope_prefix}/block{index + 1}"

    def recompute_segments(self) -> tuple[str, ...]:
        """The four blocks, e.g. ``SharedFeatureExtractor/resnet_v1_50/block1``."""
        return tuple(self._block_scope(index) for index in range(len(BLOCKS)))

    def recompute_chains(self) -> tuple[tuple[str, ...], ...]:
        """The root (``<prefix>/conv1`` with pool1), then the units of each block."""
        blocks = tuple(
            tuple(self._unit_scope(unit) for unit in self.units[block_slice])
            for block_slice in self._block_slices
        )
        return ((self.root.scope,), *blocks)

    def call_early(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Root and block1: [b, H, W, 3] -> [b, ~H/8, ~W/8, 256 * filter_scale]."""
        x = run_chain(
            [(self.root.scope, lambda y: self.pool(self.root(y, training=training)))],
            images,
            self.recompute_groups,
        )
        return self._run_block(0, x, training)

    def call_late(self, features: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:
        """Blocks 2-4 at the input's resolution; channels 512/1024/2048 x filter_scale."""
        endpoints = {}
        x = features
        for index, name in enumerate(self.late_endpoints, start=1):
            x = self._run_block(index, x, training)
            endpoints[name] = x
        return endpoints

    def preprocess(self, images: tf.Tensor) -> tf.Tensor:
        """Subtracts the ImageNet RGB mean: [b, H, W, 3] in [0, 255] -> about [-124, 152]."""
        return tf.cast(images, tf.float32) - tf.constant(RGB_MEAN, tf.float32)

    def early_size(self, size: int) -> int:
        # conv1 (explicit pad 3, stride 2), pool1 ('SAME', stride 2), block1's strided conv2.
        size = (size - 1) // 2 + 1
        size = (size + 1) // 2
        return (size - 1) // 2 + 1

    def scoped_layers(self) -> list[ConvBN]:
        layers = [self.root]
        for unit in self.units:
            layers.extend(unit.scoped_layers())
        return layers

    def dilation_rates(self) -> dict[str, int]:
        """Dilation rate of every 3x3 bottleneck conv, keyed by scope (for tests and docs)."""
        return {unit.conv2.scope: unit.conv2.rate for unit in self.units}

    # -- pruning structure ---------------------------------------------------------------------

    def declare_channels(self, graph: ChannelGraph) -> dict[str, ChannelGroup]:
        """Root conv, then per unit: conv1 and the projection read the unit's input; conv3
        is summed onto the projection's channels (first unit) or the input's (identity
        shortcut), so a block's residual channels are one group. Endpoints ``block1..4``."""
        graph.read(self.root, None, channels=3)
        current = graph.produce(self.root)
        endpoints = {}
        for index, block_slice in enumerate(self._block_slices):
            for unit in self.units[block_slice]:
                graph.read(unit.conv1, current)
                if unit.shortcut is not None:
                    graph.read(unit.shortcut, current)
                    output = graph.produce(unit.shortcut)
                else:
                    output = current  # identity shortcut: conv3 adds onto the input's channels
                inner = graph.produce(unit.conv1)
                graph.read(unit.conv2, inner)
                inner = graph.produce(unit.conv2)
                graph.read(unit.conv3, inner)
                graph.join(output, unit.conv3)
                current = output
            endpoints[f"block{index + 1}"] = current
        return endpoints

    def pruning_units(self) -> dict[str, tuple[str, ...]]:
        """``stem`` (conv1) and ``block1`` .. ``block4``."""
        units = {"stem": (self.root.scope,)}
        for index, block_slice in enumerate(self._block_slices):
            scopes = [
                layer.scope for unit in self.units[block_slice] for layer in unit.scoped_layers()
            ]
            units[f"block{index + 1}"] = tuple(scopes)
        return units


@BACKBONES.register(REGISTERED_NAME)
def build_dilated_resnet50(
    widths: WidthResolver,
    weight_decay: float = 0.0,
    atrous_rates: Sequence[int] = (2, 4),
    sync_batch_norm: bool = False,
) -> DilatedResNet50:
    """The ``dilated_resnet50`` backbone with slim's ResNet hyperparams (see the class)."""
    return DilatedResNet50(
        widths,
        slim_resnet_hyperparams(weight_decay),
        atrous_rates=atrous_rates,
        sync_batch_norm=sync_batch_norm,
    )
