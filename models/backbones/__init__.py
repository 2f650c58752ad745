"""Dilated backbones, registered by name in :data:`models.registry.BACKBONES`."""

from __future__ import annotations

from collections.abc import Sequence

from models.backbones import mobilenet_v2, resnet_v1
from models.backbones.base import Backbone
from models.backbones.mobilenet_v2 import DilatedMobileNetV2
from models.backbones.resnet_v1 import DilatedResNet50
from models.registry import BACKBONES, UnknownNameError
from models.widths import WidthResolver

# The original's `feature_extractor.type` values; each backbone module registers its factory.
RESNET50 = resnet_v1.REGISTERED_NAME
MOBILENET_V2 = mobilenet_v2.REGISTERED_NAME


def build_backbone(
    name: str,
    widths: WidthResolver,
    weight_decay: float = 0.0,
    atrous_rates: Sequence[int] = (2, 4),
    sync_batch_norm: bool = False,
) -> Backbone:
    """Builds the backbone registered as ``name`` under the ``SharedFeatureExtractor`` scope.

    Args:
      name: a name of :data:`models.registry.BACKBONES` ("dilated_resnet50",
        "dilated_mobilenet", or one registered by your code).
      widths: width resolver shared with the head.
      weight_decay: L2 weight of the backbone kernels (the original used 0).
      atrous_rates: dilation of the two dilated stages: ResNet blocks 3 and 4, MobileNetV2
        expanded_conv_7.._13 and _14.._16. (2, 4) as in PSPNet.
      sync_batch_norm: synchronise BN across replicas.

    Raises:
      ValueError: for an unknown name (the message lists the registered ones).
    """
    try:
        factory = BACKBONES.get(name)
    except UnknownNameError:
        known = ", ".join(BACKBONES.names())
        raise ValueError(
            f"Unknown feature_extractor type {name!r}; known backbones: {known}."
        ) from None
    return factory(
        widths,
        weight_decay=weight_decay,
        atrous_rates=atrous_rates,
        sync_batch_norm=sync_batch_norm,
    )


__all__ = [
    "BACKBONES",
    "MOBILENET_V2",
    "RESNET50",
    "Backbone",
    "DilatedMobileNetV2",
    "DilatedResNet50",
    "build_backbone",
]
