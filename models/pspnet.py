"""PSPNet50: dilated ResNet-50 (or MobileNetV2) + pyramid pooling module (Zhao et al., CVPR 2017).

Shapes for a 713x713 input at filter_scale 1.0:

  input 713x713 --backbone (output stride 8)--> block4 90x90x2048
      --PSPModule: 4 levels (1, 2, 3, 6 bins) of pool, 1x1 conv 512, upsample; concat with the
        input (4096 channels); 3x3 conv 512 (PSPModule/Conv_4)--> 90x90x512
      --Predictions/Conv 1x1--> 90x90xC (1/8); eval: Interp x8 -> 713x713.
  block2 90x90x512 --AuxPredictions/AuxOutput 1x1--> 90x90xC (training only)

The original put the aux classifier on block2; the paper uses res4b22 (block3): ``aux_endpoint``
chooses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import tensorflow as tf

from models import outputs
from models.backbones import RESNET50
from models.hyperparams import ConvHyperparams
from models.layers.conv_bn import PredictionConv
from models.layers.interp import interp, interp_size
from models.layers.pyramid_pooling import PyramidPoolingModule
from models.registry import ARCHITECTURES
from models.segmentation_model import ScopedLayer, SegmentationModel

if TYPE_CHECKING:
    from core.pruning.dependency import ChannelGraph


@ARCHITECTURES.register("pspnet")
class PSPNet(SegmentationModel):
    """PSPNet with a dilated backbone.

    Args:
      num_classes: number of classes (19 for Cityscapes).
      filter_scale: fraction of filters kept in compressible convs, in (0, 1]; the pyramid's
        per-level 1x1 convs are never scaled (as in the original).
      backbone: "dilated_resnet50" or "dilated_mobilenet".
      hyperparams: head conv hyperparams.
      pooling_factors: pyramid levels, (1, 2, 3, 6) in the paper and the configs.
      aux_endpoint: backbone endpoint under the aux classifier; None means the original's
        (ResNet "block2", MobileNetV2 "layer_8"); "block3" is the paper's.
      upsample_logits: Interp the training logits to input size too.
      layer_widths: per-conv width overrides by slim scope.
      backbone_weight_decay: L2 weight on backbone kernels (the original: 0).
      atrous_rates: backbone dilation of its two dilated stages.
      sync_batch_norm: synchronise BN across replicas.

    Raises:
      ValueError: for invalid arguments or unknown layer_widths keys.
    """

    def __init__(
        self,
        num_classes: int,
        filter_scale: float = 1.0,
        *,
        backbone: str = RESNET50,
        hyperparams: ConvHyperparams | None = None,
        pooling_factors: Sequence[float] = (1, 2, 3, 6),
        aux_endpoint: str | None = None,
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
            name="PSPNet",
        )
        widths = self.widths
        aux_endpoint = aux_endpoint or self.backbone.default_aux_endpoint
        valid = (self.backbone.early_endpoint, *self.backbone.late_endpoints)
        if aux_endpoint not in valid:
            raise ValueError(
                f"aux_endpoint {aux_endpoint!r} is not an endpoint of {backbone}; use one of "
                f"{list(valid)}."
            )
        hyperparams = hyperparams or ConvHyperparams()
        self.aux_endpoint = aux_endpoint
        self.psp = PyramidPoolingModule(pooling_factors, widths, hyperparams, sync_batch_norm)
        self.predictions = PredictionConv("Predictions/Conv", num_classes, hyperparams)
        self.aux_head = PredictionConv("AuxPredictions/AuxOutput", num_classes, hyperparams)
        widths.fixed(self.predictions.scope)
        widths.fixed(self.aux_head.scope)
        widths.check_all_used("PSPNet")

    def call(
        self, images: tf.Tensor, training: bool = False, include_aux: bool | None = None
    ) -> dict[str, tf.Tensor]:
        """Runs PSPNet.

        Args:
          images: preprocessed float32 [batch, H, W, 3] with static H and W.
          training: Python bool.
          include_aux: compute the aux logits (default: ``training``).

        Returns:
          ``logits``: float32 [batch, h, w, num_classes], h ~ H/8 in training, Interp x8 of that
            in eval or with upsample_logits.
          ``aux_logits`` (aux only): float32 [batch, ~H/8, ~W/8, num_classes].
        """
        training = bool(training)
        include_aux = training if include_aux is None else bool(include_aux)
        endpoints = self.backbone(images, training=training)
        features = self.run_segment(
            "PSPModule",
            lambda x: self.psp(x, training=training),
            endpoints[self.backbone.final_endpoint],
        )
        logits = self.predictions(features)
        if not training or self.upsample_logits:
            logits = interp(logits, 8.0)
        result = {outputs.LOGITS: logits}
        if include_aux:
            result[outputs.AUX_LOGITS] = self.aux_head(endpoints[self.aux_endpoint])
        return result

    def output_specs(self, training: bool = True) -> tuple[outputs.OutputSpec, ...]:
        """Main logits (weight 1.0) and, in training, the aux logits (weight 0.4), both hardcoded
        in the original."""
        full_size = not training or self.upsample_logits
        main = outputs.OutputSpec(outputs.LOGITS, 1.0 if full_size else 1 / 8, None, 1.0, False)
        if not training:
            return (main,)
        return (main, outputs.OutputSpec(outputs.AUX_LOGITS, 1 / 8, None, 0.4, True))

    def output_sizes(self, height: int, width: int, training: bool = True) -> dict:
        """Exact (height, width) of every ``predict`` output, by the size arithmetic."""
        full_size = not training or self.upsample_logits
        stride8 = [self.backbone.early_size(n) for n in (height, width)]
        main = tuple(interp_size(n, 8.0) if full_size else n for n in stride8)
        sizes = {outputs.LOGITS: main}
        if training:
            sizes[outputs.AUX_LOGITS] = tuple(stride8)
        return sizes

    def min_input_size(self) -> tuple[int, int]:
        needed = max(self.pooling_factors)
        n = 1
        while self.backbone.early_size(n) < needed:
            n += 1
        return n, n

    def scoped_layers(self) -> list[ScopedLayer]:
        layers: list[ScopedLayer] = list(self.backbone.scoped_layers())
        layers.extend(self.psp.scoped_layers())
        layers.extend([self.predictions, self.aux_head])
        return layers

    def aux_scopes(self) -> tuple[str, ...]:
        return (self.aux_head.scope,)

    def head_segments(self) -> tuple[str, ...]:
        """The pyramid pooling module (``PSPModule``)."""
        return ("PSPModule",)

    def prediction_scopes(self) -> tuple[str, ...]:
        return (self.predictions.scope, self.aux_head.scope)

    # -- pruning structure ---------------------------------------------------------------------

    def declare_channels(self, graph: ChannelGraph) -> None:
        """Backbone; one group per pyramid level; ``PSPModule/Conv_4`` reads
        ``concat([features, level 0, .., level n-1])`` (input first); the aux head reads its
        backbone endpoint."""
        endpoints = self.backbone.declare_channels(graph)
        final = endpoints[self.backbone.final_endpoint]
        levels = []
        for branch in self.psp.branches:
            graph.read(branch, final)
            levels.append(graph.produce(branch))
        graph.read(self.psp.fuse, final, *levels)
        fused = graph.produce(self.psp.fuse)
        graph.read(self.predictions, fused)
        graph.read(self.aux_head, endpoints[self.aux_endpoint])

    def pruning_units(self) -> dict[str, tuple[str, ...]]:
        """The backbone's units and ``PSPModule``."""
        units = super().pruning_units()
        units["PSPModule"] = tuple(layer.scope for layer in self.psp.scoped_layers())
        return units
