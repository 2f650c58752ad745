"""Segmentation networks: ICNet and PSPNet on dilated ResNet-50 / MobileNetV2 backbones.

Models take plain values (no protos). See ``models.segmentation_model`` for the contract and
docs/models.md for the architecture and its deviations from the papers and the original.
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
from models.segmentation_model import SegmentationModel

MODELS = {"icnet": ICNet, "pspnet": PSPNet}

__all__ = [
    "MODELS",
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
