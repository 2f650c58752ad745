"""The architecture and backbone registries: what is registered, and unknown names."""

import pytest

from core.registry import UnknownNameError
from models import ARCHITECTURES, BACKBONES, ICNet, PSPNet
from models.backbones import DilatedMobileNetV2, DilatedResNet50, build_backbone
from models.widths import WidthResolver


def test_builtin_architectures_and_backbones_register_themselves():
    assert ARCHITECTURES.names() == ("icnet", "pspnet")
    assert ARCHITECTURES.get("icnet") is ICNet
    assert ARCHITECTURES.get("pspnet") is PSPNet
    # The original's feature_extractor.type values, and nothing else.
    assert BACKBONES.names() == ("dilated_mobilenet", "dilated_resnet50")


@pytest.mark.parametrize(
    "name, cls", [("dilated_resnet50", DilatedResNet50), ("dilated_mobilenet", DilatedMobileNetV2)]
)
def test_backbone_factories_build_their_class(name, cls):
    backbone = build_backbone(name, WidthResolver(0.25, None))
    assert type(backbone) is cls


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UnknownNameError) as error:
        ARCHITECTURES.get("pspent")
    assert str(error.value) == (
        "unknown architecture 'pspent'; known architectures: icnet, pspnet. Did you mean 'pspnet'?"
    )
    with pytest.raises(ValueError) as error:
        build_backbone("mobilenet_v3", WidthResolver(1.0, None))
    assert str(error.value) == (
        "Unknown feature_extractor type 'mobilenet_v3'; known backbones: dilated_mobilenet, "
        "dilated_resnet50."
    )


def test_a_registered_backbone_is_built_by_name():
    calls = []

    def toy_backbone(widths, weight_decay, atrous_rates, sync_batch_norm):
        calls.append((widths.filter_scale, weight_decay, tuple(atrous_rates), sync_batch_norm))
        return "toy backbone"

    BACKBONES.register("toy_backbone", toy_backbone)
    try:
        built = build_backbone("toy_backbone", WidthResolver(0.5, None), 1e-4, (2, 2), True)
    finally:
        BACKBONES.unregister("toy_backbone")
    assert built == "toy backbone"
    assert calls == [(0.5, 1e-4, (2, 2), True)]
    assert "toy_backbone" not in BACKBONES
