"""Dilated MobileNetV2 in the TF-slim layout (output stride 8), split in two stages for ICNet.

Layers, named as slim's ``mobilenet_v2`` base so that its ImageNet checkpoint loads by name
(``layer_N`` is the N-th op of slim's spec):

  layer_1  ``Conv``           3x3/2 conv, 32 filters, BN, relu6
  layer_2  ``expanded_conv``  inverted residual, expansion 1, 16 filters
  layer_3+ ``expanded_conv_1`` .. ``expanded_conv_16``: expansion 6, outputs
           24,24 | 32,32,32 | 64,64,64,64 | 96,96,96 | 160,160,160 | 320
           with stride 2 at expanded_conv_1, _3, _6 and _13.

Inverted residual: ``expand`` 1x1 (to ``make_divisible(6 * in, 8)``; absent at expansion 1) + BN
+ relu6, ``depthwise`` 3x3 (weights ``depthwise_weights``) + BN + relu6, ``project`` 1x1 + BN (no
activation), plus the input when the stride is 1 and the width is unchanged.

Output stride 8 as slim's ``output_stride=8``: expanded_conv_6 and _13 run with stride 1, layers
expanded_conv_7.._13 dilate by ``atrous_rates[0]`` (2) and _14.._16 by ``atrous_rates[1]`` (4).
The final 1x1 ``Conv_1`` (1280) is not built: the original stopped the base at layer_18.
Padding is TF 'SAME' everywhere (slim MobileNet does not use explicit padding).

``filter_scale`` scales the outputs of expanded_conv_1 .. _16 (24 .. 320 filters) and rounds them
with slim's ``make_divisible(depth * filter_scale, 8)``, as the original did; ``Conv`` (32) and
``expanded_conv`` (16) keep their width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import keras
import tensorflow as tf

from models.backbones.base import Backbone
from models.hyperparams import ConvHyperparams, slim_mobilenet_hyperparams
from models.layers.conv_bn import ConvBN
from models.registry import BACKBONES
from models.widths import WidthResolver

if TYPE_CHECKING:
    from core.pruning.dependency import ChannelGraph, ChannelGroup

SLIM_SCOPE = "MobilenetV2"
# The original's ``feature_extractor.type`` of this backbone.
REGISTERED_NAME = "dilated_mobilenet"
# (output filters, stride) of expanded_conv, expanded_conv_1 .. expanded_conv_16.
INVERTED_RESIDUALS = (
    (16, 1),
    (24, 2),
    (24, 1),
    (32, 2),
    (32, 1),
    (32, 1),
    (64, 2),
    (64, 1),
    (64, 1),
    (64, 1),
    (96, 1),
    (96, 1),
    (96, 1),
    (160, 2),
    (160, 1),
    (160, 1),
    (320, 1),
)
# Index (into INVERTED_RESIDUALS) of the last block of the early stage: expanded_conv_3 = layer_5.
EARLY_LAST = 3
# Blocks from which the dilation rates apply (slim: the layer after the first converted stride).
FIRST_RATE_1 = 7
FIRST_RATE_2 = 14
EXPANSION = 6


def layer_name(index: int) -> str:
    """slim endpoint name of inverted residual ``index`` (0 -> layer_2)."""
    return f"layer_{index + 2}"


class InvertedResidual(keras.layers.Layer):
    """One slim ``expanded_conv`` block.

    Args:
      scope: ``<prefix>/expanded_conv[_k]``.
      in_depth: channels of the input.
      out_depth: width of ``project``.
      expand_width: width of the ``expand`` conv, or None for none (expansion 1).
      stride, rate: of the depthwise conv.
      nominal_residual: whether slim adds the input (stride 1 and same nominal width).
      widths, hyperparams, sync_batch_norm: as in :class:`DilatedMobileNetV2`.

    Call args:
      inputs: float32 [batch, h, w, in_depth].

    Returns:
      float32 [batch, ceil(h / stride), ceil(w / stride), out_depth].
    """

    def __init__(
        self,
        scope: str,
        in_depth: int,
        out_depth: int,
        expand_width: int | None,
        stride: int,
        rate: int,
        nominal_residual: bool,
        hyperparams: ConvHyperparams,
        sync_batch_norm: bool,
    ):
        super().__init__(name=scope.replace("/", "."))
        common = dict(hyperparams=hyperparams, sync_batch_norm=sync_batch_norm)
        self.expand = None
        inner = in_depth
        if expand_width is not None:
            self.expand = ConvBN(f"{scope}/expand", expand_width, 1, activation="relu6", **common)
            inner = expand_width
        self.depthwise = ConvBN(
            f"{scope}/depthwise",
            inner,
            3,
            stride=stride,
            rate=rate,
            activation="relu6",
            depthwise=True,
            **common,
        )
        self.project = ConvBN(f"{scope}/project", out_depth, 1, **common)
        self.residual = nominal_residual
        if nominal_residual and out_depth != in_depth:
            raise ValueError(
                f"{scope}/project has {out_depth} filters but the block's input has {in_depth} "
                "channels; the residual sum needs equal widths. Fix layer_widths."
            )

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = inputs
        if self.expand is not None:
            x = self.expand(x, training=training)
        x = self.depthwise(x, training=training)
        x = self.project(x, training=training)
        # quantize_sum: identity unless quantization-aware training is on.
        return self.project.quantize_sum(x + inputs, training) if self.residual else x

    def scoped_layers(self) -> list[ConvBN]:
        head = [self.expand] if self.expand is not None else []
        return [*head, self.depthwise, self.project]


class DilatedMobileNetV2(Backbone):
    """MobileNetV2 base (depth multiplier 1), output stride 8.

    Endpoints: ``layer_5`` (early stage output, 1/8, 32 x scale channels), ``layer_8`` (the
    original's aux source) and ``layer_18`` (final, 320 x scale channels).

    Args:
      widths: width resolver (filter_scale, layer_widths). The ``expand`` widths follow their
        input (``make_divisible(6 * in, 8)``) unless layer_widths names them.
      hyperparams: backbone hyperparams, normally :func:`slim_mobilenet_hyperparams`.
      scope_prefix: ``SharedFeatureExtractor/MobilenetV2`` in the segmentation models.
      atrous_rates: dilation of expanded_conv_7.._13 and _14.._16.
      sync_batch_norm: synchronise BN across replicas.
    """

    early_endpoint = "layer_5"
    final_endpoint = "layer_18"
    default_aux_endpoint = "layer_8"
    late_endpoints = ("layer_8", "layer_18")

    def __init__(
        self,
        widths: WidthResolver,
        hyperparams: ConvHyperparams,
        scope_prefix: str = f"SharedFeatureExtractor/{SLIM_SCOPE}",
        atrous_rates: Sequence[int] = (2, 4),
        sync_batch_norm: bool = False,
    ):
        super().__init__(name="MobilenetV2")
        if len(atrous_rates) != 2 or any(int(r) < 1 for r in atrous_rates):
            raise ValueError(f"atrous_rates must be two rates >= 1, got {atrous_rates!r}.")
        self.scope_prefix = scope_prefix
        stem = f"{scope_prefix}/Conv"
        self.stem = ConvBN(
            stem,
            widths.width(stem, 32, scalable=False),
            3,
            hyperparams,
            stride=2,
            activation="relu6",
            sync_batch_norm=sync_batch_norm,
        )
        in_depth = self.stem.filters
        self.blocks: list[InvertedResidual] = []
        for index, (depth, stride) in enumerate(INVERTED_RESIDUALS):
            scope = f"{scope_prefix}/expanded_conv" + (f"_{index}" if index else "")
            expand_width = None
            if index > 0:
                expand_width = widths.width(
                    f"{scope}/expand", EXPANSION * in_depth, scalable=False, divisible_by=8
                )
            # Output stride 8: strides past the third become dilation (slim's atrous logic).
            rate = 1
            if index >= FIRST_RATE_2:
                rate = int(atrous_rates[1])
            elif index >= FIRST_RATE_1:
                rate = int(atrous_rates[0])
            if index > EARLY_LAST:
                stride = 1
            out_depth = widths.width(
                f"{scope}/project", depth, scalable=index > 0, divisible_by=8 if index else 1
            )
            nominal_in = INVERTED_RESIDUALS[index - 1][0] if index else 32
            self.blocks.append(
                InvertedResidual(
                    scope,
                    in_depth,
                    out_depth,
                    expand_width,
                    stride,
                    rate,
                    nominal_residual=stride == 1 and nominal_in == depth,
                    hyperparams=hyperparams,
                    sync_batch_norm=sync_batch_norm,
                )
            )
            in_depth = out_depth

    def call_early(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """layer_1 .. layer_5: [b, H, W, 3] -> [b, ceil(H/8), ceil(W/8), 32 x scale]."""
        x = self.stem(images, training=training)
        for block in self.blocks[: EARLY_LAST + 1]:
            x = block(x, training=training)
        return x

    def call_late(self, features: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:
        """layer_6 .. layer_18 at the input's resolution."""
        endpoints = {}
        x = features
        for index in range(EARLY_LAST + 1, len(self.blocks)):
            x = self.blocks[index](x, training=training)
            if layer_name(index) in self.late_endpoints:
                endpoints[layer_name(index)] = x
        return endpoints

    def preprocess(self, images: tf.Tensor) -> tf.Tensor:
        """Maps [0, 255] to [-1, 1]: [b, H, W, 3] -> [b, H, W, 3]."""
        return tf.cast(images, tf.float32) / 127.5 - 1.0

    def early_size(self, size: int) -> int:
        # Three stride-2 'SAME' layers: Conv, expanded_conv_1, expanded_conv_3.
        for _ in range(3):
            size = -(-size // 2)
        return size

    def scoped_layers(self) -> list[ConvBN]:
        layers = [self.stem]
        for block in self.blocks:
            layers.extend(block.scoped_layers())
        return layers

    def dilation_rates(self) -> dict[str, int]:
        """Dilation rate of every depthwise conv, keyed by scope."""
        return {block.depthwise.scope: block.depthwise.rate for block in self.blocks}

    # -- pruning structure ---------------------------------------------------------------------

    def declare_channels(self, graph: ChannelGraph) -> dict[str, ChannelGroup]:
        """Stem, then per block: ``expand`` starts a group, ``depthwise`` passes it through,
        ``project`` starts the block's output group or, in a residual block, is summed onto
        the input's. Endpoints ``layer_2`` .. ``layer_18``."""
        graph.read(self.stem, None, channels=3)
        current = graph.produce(self.stem)
        endpoints = {}
        for index, block in enumerate(self.blocks):
            inner = current
            if block.expand is not None:
                graph.read(block.expand, current)
                inner = graph.produce(block.expand)
            graph.read(block.depthwise, inner)
            inner = graph.pass_through(inner, block.depthwise)
            graph.read(block.project, inner)
            if block.residual:
                graph.join(current, block.project)
            else:
                current = graph.produce(block.project)
            endpoints[layer_name(index)] = current
        return endpoints

    def stages(self) -> list[list[int]]:
        """Block indices of each stage: a block without residual sum and the residual blocks
        after it, which share its output channels (``[[0], [1, 2], [3, 4, 5], ...]``)."""
        stages: list[list[int]] = []
        for index, block in enumerate(self.blocks):
            if block.residual and stages:
                stages[-1].append(index)
            else:
                stages.append([index])
        return stages

    def pruning_units(self) -> dict[str, tuple[str, ...]]:
        """``stem`` (Conv) and one ``expanded_conv_a-b`` unit per stage (blocks a..b)."""
        units = {"stem": (self.stem.scope,)}
        for stage in self.stages():
            first, last = stage[0], stage[-1]
            name = "expanded_conv" + (f"_{first}" if first else "")
            name += f"-{last}" if last != first else ""
            scopes = [layer.scope for i in stage for layer in self.blocks[i].scoped_layers()]
            units[name] = tuple(scopes)
        return units


@BACKBONES.register(REGISTERED_NAME)
def build_dilated_mobilenet(
    widths: WidthResolver,
    weight_decay: float = 0.0,
    atrous_rates: Sequence[int] = (2, 4),
    sync_batch_norm: bool = False,
) -> DilatedMobileNetV2:
    """The ``dilated_mobilenet`` backbone with slim's MobileNet hyperparams (see the class)."""
    return DilatedMobileNetV2(
        widths,
        slim_mobilenet_hyperparams(weight_decay),
        atrous_rates=atrous_rates,
        sync_batch_norm=sync_batch_norm,
    )
