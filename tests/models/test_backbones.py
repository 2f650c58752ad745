"""Dilated ResNet-50 and MobileNetV2: layout, dilation, widths, slim names."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.backbones import build_backbone
from models.backbones.mobilenet_v2 import DilatedMobileNetV2
from models.backbones.resnet_v1 import DilatedResNet50
from models.hyperparams import slim_mobilenet_hyperparams, slim_resnet_hyperparams
from models.widths import WidthResolver

RESNET = "SharedFeatureExtractor/resnet_v1_50"
MOBILENET = "SharedFeatureExtractor/MobilenetV2"


def _variables(backbone):
    names = {}
    for layer in backbone.scoped_layers():
        names.update(layer.slim_variables())
    return names


@pytest.fixture(scope="module")
def resnet():
    backbone = DilatedResNet50(WidthResolver(0.25), slim_resnet_hyperparams())
    backbone(tf.zeros([1, 33, 47, 3]))
    return backbone


@pytest.fixture(scope="module")
def mobilenet():
    backbone = DilatedMobileNetV2(WidthResolver(0.5), slim_mobilenet_hyperparams())
    backbone(tf.zeros([1, 33, 47, 3]))
    return backbone


def test_resnet_endpoints_and_output_stride(resnet):
    endpoints = resnet(tf.zeros([2, 65, 97, 3]))
    # conv1 (explicit pad) 33x49, pool 17x25, block1 stride 2 -> 9x13, then stride stays 8.
    shapes = {name: tuple(t.shape) for name, t in endpoints.items()}
    assert shapes == {
        "block1": (2, 9, 13, 64),
        "block2": (2, 9, 13, 128),
        "block3": (2, 9, 13, 256),
        "block4": (2, 9, 13, 512),
    }
    assert resnet.early_size(65) == 9 and resnet.early_size(97) == 13
    assert resnet.early_size(513) == 65 and resnet.early_size(1025) == 129


def test_resnet_dilation_and_strides(resnet):
    rates = resnet.dilation_rates()
    assert len(rates) == 16
    for scope, rate in rates.items():
        expected = 2 if "/block3/" in scope else 4 if "/block4/" in scope else 1
        assert rate == expected, scope
    convs = resnet.scoped_layers()
    for layer in convs:
        assert layer.conv.dilation_rate == (layer.rate, layer.rate)
    strided = sorted(layer.scope for layer in convs if layer.stride == 2)
    assert strided == [
        f"{RESNET}/block1/unit_3/bottleneck_v1/conv2",
        f"{RESNET}/conv1",
    ]


def test_resnet_slim_names_and_shapes(resnet):
    shapes = {k: tuple(v.shape) for k, v in _variables(resnet).items()}
    unit = f"{RESNET}/block1/unit_1/bottleneck_v1"
    assert shapes[f"{RESNET}/conv1/weights"] == (7, 7, 3, 16)
    assert shapes[f"{RESNET}/conv1/BatchNorm/gamma"] == (16,)
    assert shapes[f"{unit}/conv1/weights"] == (1, 1, 16, 16)
    assert shapes[f"{unit}/conv2/weights"] == (3, 3, 16, 16)
    assert shapes[f"{unit}/conv3/weights"] == (1, 1, 16, 64)
    assert shapes[f"{unit}/shortcut/weights"] == (1, 1, 16, 64)
    assert shapes[f"{unit}/shortcut/BatchNorm/moving_variance"] == (64,)
    assert shapes[f"{RESNET}/block4/unit_3/bottleneck_v1/conv3/weights"] == (1, 1, 128, 512)
    assert f"{RESNET}/block1/unit_2/bottleneck_v1/shortcut/weights" not in shapes
    # 53 convs (1 root + 16 units x 3 + 4 shortcuts), each with weights and 4 BN variables.
    assert len(shapes) == 53 * 5
    assert not any("biases" in name for name in shapes)


def test_resnet_preprocess_subtracts_mean(resnet):
    images = tf.fill([1, 2, 2, 3], 128.0)
    out = resnet.preprocess(images).numpy()
    np.testing.assert_allclose(
        out[0, 0, 0], [128 - 123.68, 128 - 116.779, 128 - 103.939], rtol=1e-6
    )


def test_mobilenet_endpoints_widths_and_rates(mobilenet):
    endpoints = mobilenet(tf.zeros([1, 65, 97, 3]))
    shapes = {name: tuple(t.shape) for name, t in endpoints.items()}
    # 0.5: 32 -> 16 (layer_5), 64 -> 32 (layer_8), 320 -> 160 (layer_18); stride 8 throughout.
    assert shapes == {
        "layer_5": (1, 9, 13, 16),
        "layer_8": (1, 9, 13, 32),
        "layer_18": (1, 9, 13, 160),
    }
    rates = mobilenet.dilation_rates()
    for index in range(17):
        scope = f"{MOBILENET}/expanded_conv" + (f"_{index}" if index else "") + "/depthwise"
        expected = 4 if index >= 14 else 2 if index >= 7 else 1
        assert rates[scope] == expected, scope
    shapes = {k: tuple(v.shape) for k, v in _variables(mobilenet).items()}
    assert shapes[f"{MOBILENET}/Conv/weights"] == (3, 3, 3, 32)  # never scaled
    assert shapes[f"{MOBILENET}/expanded_conv/depthwise/depthwise_weights"] == (3, 3, 32, 1)
    assert shapes[f"{MOBILENET}/expanded_conv/project/weights"] == (1, 1, 32, 16)
    assert f"{MOBILENET}/expanded_conv/expand/weights" not in shapes  # expansion 1
    # 24 * 0.5 = 12 is rounded up to 16 by slim's make_divisible, as in the original.
    assert shapes[f"{MOBILENET}/expanded_conv_1/expand/weights"] == (1, 1, 16, 96)
    assert shapes[f"{MOBILENET}/expanded_conv_1/project/weights"] == (1, 1, 96, 16)
    assert shapes[f"{MOBILENET}/expanded_conv_16/project/BatchNorm/beta"] == (160,)
    assert not any("Conv_1" in name for name in shapes)  # the 1280 conv is not built


def test_mobilenet_full_width_matches_keras_mobilenet_v2():
    """At 1.0 the base equals Keras' MobileNetV2 without its final 1x1 1280 conv."""
    backbone = build_backbone("dilated_mobilenet", WidthResolver(1.0))
    backbone(tf.zeros([1, 17, 17, 3]))
    ours = sum(int(np.prod(v.shape)) for v in _variables(backbone).values())
    reference = keras.applications.MobileNetV2(weights=None, include_top=False, alpha=1.0)
    final_conv = sum(
        layer.count_params() for layer in reference.layers if layer.name in ("Conv_1", "Conv_1_bn")
    )
    assert ours == reference.count_params() - final_conv


def test_mobilenet_preprocess_range(mobilenet):
    out = mobilenet.preprocess(tf.constant([[[[0.0, 127.5, 255.0]]]])).numpy()
    np.testing.assert_allclose(out.ravel(), [-1.0, 0.0, 1.0])


def test_unknown_backbone_raises():
    with pytest.raises(ValueError, match="Unknown feature_extractor type 'resnet101'"):
        build_backbone("resnet101", WidthResolver(1.0))
