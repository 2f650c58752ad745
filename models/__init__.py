"""Segmentation networks: ICNet and PSPNet on dilated ResNet-50 / MobileNetV2 backbones.

Models take plain values (no protos). See ``models.segmentation_model`` for the contract,
``models.registry`` for the architecture and backbone registries (importing this package
registers the built-in ones) and docs/models.md for the architecture and its deviations from the
papers and the original.
"""

from models import outputs
from models.hyperparams import (
    BatchNormParams,
    ConvHyperparams,
    slim_mobilenet_hyperparams,
    slim_resnet_hyperparams,
)
from models.icnet import ICNet
from models.outputs import OutputSpec
from models.pspnet import PSPNet
from models.registry import ARCHITECTURES, BACKBONES
from models.segmentation_model import SegmentationModel

__all__ = [
    "ARCHITECTURES",
    "BACKBONES",
    "BatchNormParams",
    "ConvHyperparams",
    "ICNet",
    "OutputSpec",
    "PSPNet",
    "SegmentationModel",
    "outputs",
    "slim_mobilenet_hyperparams",
    "slim_resnet_hyperparams",
]
