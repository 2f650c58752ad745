"""Dilated backbones and the name -> constructor map used by the segmentation models."""

from __future__ import annotations

from collections.abc import Sequence

from models.backbones.base import Backbone
from models.backbones.mobilenet_v2 import DilatedMobileNetV2
from models.backbones.resnet_v1 import DilatedResNet50
from models.hyperparams import slim_mobilenet_hyperparams, slim_resnet_hyperparams
from models.widths import WidthResolver

# The original's `feature_extractor.type` values.
RESNET50 = "dilated_resnet50"
MOBILENET_V2 = "dilated_mobilenet"
BACKBONES = (RESNET50, MOBILENET_V2)


def build_backbone(
    name: str,
    widths: WidthResolver,
    weight_decay: float = 0.0,
    atrous_rates: Sequence[int] = (2, 4),
    sync_batch_norm: bool = False,
) -> Backbone:
    """Builds a backbone under the ``SharedFeatureExtractor`` scope.

    Args:
      name: "dilated_resnet50" or "dilated_mobilenet".
      widths: width resolver shared with the head.
      weight_decay: L2 weight of the backbone kernels (the original used 0).
      atrous_rates: dilation of the two dilated stages: ResNet blocks 3 and 4, MobileNetV2
        expanded_conv_7.._13 and _14.._16. (2, 4) as in PSPNet.
      sync_batch_norm: synchronise BN across replicas.

    Raises:
      ValueError: for an unknown name.
    """
    if name == RESNET50:
        return DilatedResNet50(
            widths,
            slim_resnet_hyperparams(weight_decay),
            atrous_rates=atrous_rates,
            sync_batch_norm=sync_batch_norm,
        )
    if name == MOBILENET_V2:
        return DilatedMobileNetV2(
            widths,
            slim_mobilenet_hyperparams(weight_decay),
            atrous_rates=atrous_rates,
            sync_batch_norm=sync_batch_norm,
        )
    raise ValueError(f"Unknown feature_extractor type {name!r}; expected one of {list(BACKBONES)}.")


__all__ = [
    "BACKBONES",
    "MOBILENET_V2",
    "RESNET50",
    "Backbone",
    "DilatedMobileNetV2",
    "DilatedResNet50",
    "build_backbone",
]
