"""ICNet: an image cascade of three branches fused by CFF units (Zhao et al., ECCV 2018).

As in the original TF1 project (shapes for a 1025x2049 input, filter_scale 1.0):

  input 1025x2049 --Interp 0.5--> 513x1025 --root+block1--> 65x129x256 (1/16, "half" branch)
      --Interp 0.5--> 33x65 --blocks 2-4 (dilated)--> 33x65x2048 (1/32, "quarter" branch)
      --FastPSPModule (pool + sum, 1x1 conv)--> 33x65x512
  input --Conv, Conv_1, Conv_2 (3x3/2), Conv_3 (3x3)--> 129x257x256 (1/8, "full" branch)
  CascadeFeatureFusion(33x65x512, 65x129x256) -> 65x129x256  (aux: AuxOutput on 65x129x512)
  CascadeFeatureFusion_1(65x129x256, 129x257x256) -> 129x257x256 (aux: AuxOutput_1 on 129x257x256)
  Interp x2 -> 257x513 -> Predictions/Conv 1x1 -> 257x513xC (1/4); eval: Interp x4 -> 1025x2049.

``pretrain_single_branch_mode`` builds only the backbone (full-size input, no mid downsample),
the fast PSP module, ``Predictions/Conv`` (logits at 1/8) and an aux classifier on block2
(``AuxPredictions/AuxOutput``): a PSPNet-like net used to initialise the full ICNet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import tensorflow as tf

from models import outputs, recompute
from models.backbones import RESNET50
from models.hyperparams import ConvHyperparams
from models.layers.cascade_feature_fusion import CascadeFeatureFusion
from models.layers.conv_bn import ConvBN, PredictionConv
from models.layers.interp import interp, interp_size
from models.layers.pyramid_pooling import FastPyramidPooling
from models.registry import ARCHITECTURES
from models.segmentation_model import ScopedLayer, SegmentationModel

if TYPE_CHECKING:
    from core.pruning.dependency import ChannelGraph, ChannelGroup

# (scope, nominal filters, stride) of the full-resolution branch.
FULL_BRANCH = (("Conv", 64, 2), ("Conv_1", 64, 2), ("Conv_2", 128, 2), ("Conv_3", 256, 1))


@ARCHITECTURES.register("icnet")
class ICNet(SegmentationModel):
    """ICNet with a dilated ResNet-50 or MobileNetV2 backbone.

    Args:
      num_classes: number of classes (19 for Cityscapes).
      filter_scale: fraction of filters kept in every compressible conv, in (0, 1].
      backbone: "dilated_resnet50" or "dilated_mobilenet".
      hyperparams: head conv hyperparams (the original's config ``hyperparams``).
      pooling_factors: fast PSP pyramid levels; the configs use (1, 2, 3, 4).
      pretrain_single_branch_mode: build the single-branch pretraining net instead.
      mobile_ops_only: merge the pyramid levels with chained binary Adds instead of one AddN,
        as the original's mobile flag did. Every other op is already a TFLite builtin.
      upsample_logits: also Interp the training logits to input size (the loss then sees
        full-resolution logits).
      layer_widths: per-conv width overrides by slim scope (pruned checkpoints).
      backbone_weight_decay: L2 weight on backbone kernels (the original: 0).
      atrous_rates: backbone dilation of its two dilated stages.
      sync_batch_norm: synchronise BN across replicas of a distribution strategy.

    Raises:
      ValueError: for invalid sizes, factors or unknown layer_widths keys.
    """

    def __init__(
        self,
        num_classes: int,
        filter_scale: float = 1.0,
        *,
        backbone: str = RESNET50,
        hyperparams: ConvHyperparams | None = None,
        pooling_factors: Sequence[float] = (1, 2, 3, 4),
        pretrain_single_branch_mode: bool = False,
        mobile_ops_only: bool = False,
        upsample_logits: bool = False,
        layer_widths: Mapping[str, int] | None = None,
        backbone_weight_decay: float = 0.0,
        atrous_rates: Sequence[int] = (2, 4),
        sync_batch_norm: bool = False,
    ):
        super().__init__(
            num_classes,
            filter_scale=filter_scale,
            layer_widths=layer_widths,
            backbone=backbone,
            backbone_weight_decay=backbone_weight_decay,
            atrous_rates=atrous_rates,
            sync_batch_norm=sync_batch_norm,
            pooling_factors=pooling_factors,
            upsample_logits=upsample_logits,
            name="ICNet",
        )
        widths = self.widths
        hyperparams = hyperparams or ConvHyperparams()
        self.pretrain_single_branch_mode = pretrain_single_branch_mode
        self.psp = FastPyramidPooling(
            pooling_factors, widths, hyperparams, mobile_ops_only, sync_batch_norm
        )
        self.full_branch: list[ConvBN] = []
        self.cff: list[CascadeFeatureFusion] = []
        if pretrain_single_branch_mode:
            self.aux_heads = [PredictionConv("AuxPredictions/AuxOutput", num_classes, hyperparams)]
        else:
            for scope, depth, stride in FULL_BRANCH:
                self.full_branch.append(
                    ConvBN(
                        scope,
                        widths.width(scope, depth),
                        3,
                        hyperparams,
                        stride=stride,
                        activation="relu6",
                        sync_batch_norm=sync_batch_norm,
                    )
                )
            self.cff = [
                CascadeFeatureFusion(scope, widths, hyperparams, sync_batch_norm)
                for scope in ("CascadeFeatureFusion", "CascadeFeatureFusion_1")
            ]
            self.aux_heads = [
                PredictionConv(scope, num_classes, hyperparams)
                for scope in ("AuxOutput", "AuxOutput_1")
            ]
        self.predictions = PredictionConv("Predictions/Conv", num_classes, hyperparams)
        for layer in (self.predictions, *self.aux_heads):
            widths.fixed(layer.scope)
        widths.check_all_used("ICNet")

    def call(
        self, images: tf.Tensor, training: bool = False, include_aux: bool | None = None
    ) -> dict[str, tf.Tensor]:
        """Runs ICNet.

        Args:
          images: preprocessed float32 [batch, H, W, 3] with static H and W.
          training: Python bool: BN mode, aux outputs, training-size logits.
          include_aux: compute the aux logits (default: ``training``).

        Returns:
          ``logits``: float32 [batch, h, w, num_classes]; h = Interp(H, 1/4) in training, H in
            eval or with upsample_logits (1/8 instead of 1/4 in pretrain mode).
          ``aux_logits_1_16`` / ``aux_logits_1_8`` (aux only): [batch, ~H/16 | ~H/8, .., C].
          ``aux_logits`` (aux, pretrain mode only): [batch, ~H/8, ~W/8, num_classes].
        """
        training = bool(training)
        include_aux = training if include_aux is None else bool(include_aux)
        if self.pretrain_single_branch_mode:
            return self._call_single_branch(images, training, include_aux)
        half = self.backbone.call_early(interp(images, 0.5), training=training)
        late = self.backbone.call_late(interp(half, 0.5), training=training)
        quarter = self._psp(late[self.backbone.final_endpoint], training)
        full = recompute.run_chain(
            [
                (conv.scope, lambda x, conv=conv: conv(x, training=training))
                for conv in self.full_branch
            ],
            images,
            self.recompute_groups,
        )
        fused, upsampled_1_16 = self._cff(0, quarter, half, training)
        fused, upsampled_1_8 = self._cff(1, fused, full, training)
        logits = self.predictions(interp(fused, 2.0))
        if not training or self.upsample_logits:
            logits = interp(logits, 4.0)
        result = {outputs.LOGITS: logits}
        if include_aux:
            result[outputs.AUX_LOGITS_1_16] = self.aux_heads[0](upsampled_1_16)
            result[outputs.AUX_LOGITS_1_8] = self.aux_heads[1](upsampled_1_8)
        return result

    def _call_single_branch(
        self, images: tf.Tensor, training: bool, include_aux: bool
    ) -> dict[str, tf.Tensor]:
        endpoints = self.backbone(images, training=training)
        features = self._psp(endpoints[self.backbone.final_endpoint], training)
        logits = self.predictions(features)
        if not training or self.upsample_logits:
            logits = interp(logits, 8.0)
        result = {outputs.LOGITS: logits}
        if include_aux:
            aux_input = endpoints[self.backbone.default_aux_endpoint]
            result[outputs.AUX_LOGITS] = self.aux_heads[0](aux_input)
        return result

    def _psp(self, features: tf.Tensor, training: bool) -> tf.Tensor:
        return self.run_segment("FastPSPModule", lambda x: self.psp(x, training=training), features)

    def _cff(
        self, index: int, coarse: tf.Tensor, fine: tf.Tensor, training: bool
    ) -> tuple[tf.Tensor, tf.Tensor]:
        unit = self.cff[index]
        return self.run_segment(
            unit.scope, lambda c, f: tuple(unit(c, f, training=training)), coarse, fine
        )

    def head_segments(self) -> tuple[str, ...]:
        """``FastPSPModule`` and the CFF units (none in pretrain mode)."""
        return ("FastPSPModule", *(unit.scope for unit in self.cff))

    def head_chains(self) -> tuple[tuple[str, ...], ...]:
        """The coarse segments, and the full-resolution branch ``Conv`` .. ``Conv_3``."""
        branch = (tuple(conv.scope for conv in self.full_branch),) if self.full_branch else ()
        return (("FastPSPModule",), *branch, *((unit.scope,) for unit in self.cff))

    def output_specs(self, training: bool = True) -> tuple[outputs.OutputSpec, ...]:
        """Main logits (weight ``main_branch_loss_weight``) and, in training, the aux ones."""
        full_size = not training or self.upsample_logits
        if self.pretrain_single_branch_mode:
            main = outputs.OutputSpec(
                outputs.LOGITS, 1.0 if full_size else 1 / 8, "main_branch_loss_weight", 1.0, False
            )
            aux = (outputs.OutputSpec(outputs.AUX_LOGITS, 1 / 8, None, 0.4, True),)
        else:
            main = outputs.OutputSpec(
                outputs.LOGITS, 1.0 if full_size else 1 / 4, "main_branch_loss_weight", 1.0, False
            )
            aux = (
                outputs.OutputSpec(
                    outputs.AUX_LOGITS_1_16, 1 / 16, "first_branch_loss_weight", 0.4, True
                ),
                outputs.OutputSpec(
                    outputs.AUX_LOGITS_1_8, 1 / 8, "second_branch_loss_weight", 0.4, True
                ),
            )
        return (main, *aux) if training else (main,)

    def output_sizes(self, height: int, width: int, training: bool = True) -> dict:
        """Exact (height, width) of every ``predict`` output, by the Interp size arithmetic."""
        full_size = not training or self.upsample_logits
        sizes = [self._dimension_sizes(n, full_size) for n in (height, width)]
        keys = [spec.key for spec in self.output_specs(training)]
        return {key: (sizes[0][key], sizes[1][key]) for key in keys}

    def _dimension_sizes(self, n: int, full_size: bool) -> dict[str, int]:
        if self.pretrain_single_branch_mode:
            stride8 = self.backbone.early_size(n)
            return {
                outputs.LOGITS: interp_size(stride8, 8.0) if full_size else stride8,
                outputs.AUX_LOGITS: stride8,
            }
        half = self.backbone.early_size(interp_size(n, 0.5))
        full = n
        for _, _, stride in FULL_BRANCH:
            full = -(-full // stride)  # 'SAME' padding: ceil(n / stride).
        quarter_logits = interp_size(full, 2.0)
        return {
            outputs.LOGITS: interp_size(quarter_logits, 4.0) if full_size else quarter_logits,
            outputs.AUX_LOGITS_1_16: interp_size(interp_size(half, 0.5), 2.0),
            outputs.AUX_LOGITS_1_8: interp_size(half, 2.0),
        }

    def pooled_size(self, n: int) -> int:
        """Size of the fast PSP input map for an input dimension of ``n`` pixels."""
        if self.pretrain_single_branch_mode:
            return self.backbone.early_size(n)
        return interp_size(self.backbone.early_size(interp_size(n, 0.5)), 0.5)

    def min_input_size(self) -> tuple[int, int]:
        needed = max(self.pooling_factors)
        n = 1
        while self.pooled_size(n) < needed:
            n += 1
        return n, n

    def scoped_layers(self) -> list[ScopedLayer]:
        layers: list[ScopedLayer] = list(self.backbone.scoped_layers())
        layers.extend(self.psp.scoped_layers())
        layers.extend(self.full_branch)
        for unit in self.cff:
            layers.extend(unit.scoped_layers())
        layers.append(self.predictions)
        layers.extend(self.aux_heads)
        return layers

    def aux_scopes(self) -> tuple[str, ...]:
        return tuple(head.scope for head in self.aux_heads)

    def prediction_scopes(self) -> tuple[str, ...]:
        return (self.predictions.scope, *self.aux_scopes())

    # -- pruning structure ---------------------------------------------------------------------

    def declare_channels(self, graph: ChannelGraph) -> None:
        """Backbone; the fast PSP conv (its pyramid sum keeps the channels); the full branch
        from the image; each CFF unit sums its DilatedConv (coarse input) and its projection
        Conv (fine input) into one group, which the aux head of that stage reads zoomed."""
        endpoints = self.backbone.declare_channels(graph)
        final = endpoints[self.backbone.final_endpoint]
        graph.read(self.psp.conv, final)
        quarter = graph.produce(self.psp.conv)
        if self.pretrain_single_branch_mode:
            graph.read(self.predictions, quarter)
            graph.read(self.aux_heads[0], endpoints[self.backbone.default_aux_endpoint])
            return
        full: ChannelGroup | None = None
        for conv in self.full_branch:
            graph.read(conv, full, channels=3)
            full = graph.produce(conv)
        coarse = quarter
        fines = (endpoints[self.backbone.early_endpoint], full)
        for unit, fine, aux in zip(self.cff, fines, self.aux_heads, strict=True):
            graph.read(unit.dilated_conv, coarse)
            graph.read(unit.projection_conv, fine)
            graph.read(aux, coarse)  # the aux head sees the zoomed coarse input
            fused = graph.produce(unit.dilated_conv)
            graph.join(fused, unit.projection_conv)
            coarse = fused
        graph.read(self.predictions, coarse)

    def pruning_units(self) -> dict[str, tuple[str, ...]]:
        """The backbone's units, ``FastPSPModule``, ``full_branch`` and the CFF units."""
        units = super().pruning_units()
        units["FastPSPModule"] = tuple(layer.scope for layer in self.psp.scoped_layers())
        if self.full_branch:
            units["full_branch"] = tuple(conv.scope for conv in self.full_branch)
        for unit in self.cff:
            units[unit.scope] = tuple(layer.scope for layer in unit.scoped_layers())
        return units
