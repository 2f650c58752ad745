"""Quantization-aware training: fake-quant arithmetic against numpy, and its placement on ICNet.

The placement is checked against the model's own layer list (``scoped_layers``) and the ResNet-50
block layout, not against the quantizers' bookkeeping, and in the traced graph's op counts.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models import quantization
from models.backbones.resnet_v1 import BLOCKS
from models.icnet import ICNet
from models.layers.conv_bn import ConvBN, PredictionConv
from models.layers.fake_quant import ActivationRange, fake_quant_weights

SIZE = 97  # the smallest input of ICNet with pooling factors (1, 2, 4)


def _numpy_weight_quant(kernel: np.ndarray) -> np.ndarray:
    scale = np.abs(kernel).max(axis=(0, 1, 2)) / 127.0
    return np.clip(np.round(kernel / scale), -127, 127) * scale


def _numpy_activation_quant(x: np.ndarray, low: float, high: float) -> np.ndarray:
    # TF's nudging: the range is shifted so that 0 is exactly representable.
    scale = (high - low) / 255.0
    zero = np.round(-low / scale)
    q = np.clip(np.round(x / scale) + zero, 0, 255)
    return (q - zero) * scale


def test_weight_fake_quant_matches_numpy_per_channel():
    rng = np.random.default_rng(0)
    kernel = (rng.normal(size=(3, 3, 4, 5)) * np.array([0.01, 1, 3, 0.2, 7])).astype(np.float32)
    got = fake_quant_weights(tf.constant(kernel, tf.float32)).numpy()
    np.testing.assert_allclose(got, _numpy_weight_quant(kernel), rtol=1e-5, atol=1e-7)
    # Each channel keeps at most 255 levels of its own scale.
    for channel in range(5):
        assert len(np.unique(got[..., channel])) <= 255


def test_depthwise_weights_quantized_per_input_channel():
    rng = np.random.default_rng(1)
    kernel = (rng.normal(size=(3, 3, 6, 1)) * np.arange(1, 7)[:, None]).astype(np.float32)
    got = fake_quant_weights(tf.constant(kernel), depthwise=True).numpy()
    expected = _numpy_weight_quant(kernel.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_activation_range_ema_and_fake_quant():
    rng = np.random.default_rng(2)
    first = rng.uniform(-1.0, 3.0, size=(2, 5, 5, 3)).astype(np.float32)
    second = rng.uniform(-2.0, 5.0, size=(2, 5, 5, 3)).astype(np.float32)
    quant = ActivationRange("x/act_quant", ema_decay=0.9)
    out = quant(tf.constant(first), training=True).numpy()
    # The first batch sets the range.
    assert quant.min.numpy() == pytest.approx(first.min())
    assert quant.max.numpy() == pytest.approx(first.max())
    np.testing.assert_allclose(
        out, _numpy_activation_quant(first, first.min(), first.max()), atol=1e-5
    )
    quant(tf.constant(second), training=True)
    low = 0.9 * first.min() + 0.1 * second.min()
    high = 0.9 * first.max() + 0.1 * second.max()
    assert quant.min.numpy() == pytest.approx(low, rel=1e-6)
    assert quant.max.numpy() == pytest.approx(high, rel=1e-6)
    # Inference reads the stored range and leaves it alone.
    out = quant(tf.constant(second), training=False).numpy()
    np.testing.assert_allclose(out, _numpy_activation_quant(second, low, high), atol=1e-5)
    assert quant.min.numpy() == pytest.approx(low, rel=1e-6)
    assert set(quant.variables()) == {"x/act_quant/min", "x/act_quant/max"}


@pytest.fixture(scope="module")
def tiny_icnet():
    model = ICNet(19, filter_scale=0.125, pooling_factors=(1, 2, 4))
    model.build_variables((SIZE, SIZE))
    images = tf.random.stateless_uniform([1, SIZE, SIZE, 3], (0, 1), 0, 255)
    float_logits = model(model.preprocess(images))["logits"].numpy()
    names_before = set(model.named_variables())
    state = quantization.attach(model, active=False)
    return model, state, images, float_logits, names_before


def test_attached_but_inactive_is_the_float_model(tiny_icnet):
    model, state, images, float_logits, _ = tiny_icnet
    assert not state.active
    logits = model(model.preprocess(images))["logits"].numpy()
    np.testing.assert_array_equal(logits, float_logits)


def test_placement_follows_the_layer_list(tiny_icnet):
    model, _, _, _, names_before = tiny_icnet
    layers = model.scoped_layers()
    convs = [layer for layer in layers if isinstance(layer, ConvBN | PredictionConv)]
    assert len(convs) == len(layers)
    # Every conv block: an output range (its weights need no variable).
    expected = {f"{layer.scope}/act_quant/{end}" for layer in layers for end in ("min", "max")}
    # The residual sums: every bottleneck unit (owned by its conv3) and both CFF units.
    prefix = "SharedFeatureExtractor/resnet_v1_50"
    units = [
        f"{prefix}/block{block}/unit_{unit}/bottleneck_v1/conv3"
        for block, (_, count) in enumerate(BLOCKS, start=1)
        for unit in range(1, count + 1)
    ]
    sums = units + ["CascadeFeatureFusion/Conv", "CascadeFeatureFusion_1/Conv"]
    expected |= {f"{scope}/add_quant/{end}" for scope in sums for end in ("min", "max")}
    # Inputs that no quantized op produces: the image (root conv and full branch) and AddN.
    inputs = [f"{prefix}/conv1", "Conv", "FastPSPModule/Conv"]
    expected |= {f"{scope}/input_quant/{end}" for scope in inputs for end in ("min", "max")}
    added = set(model.named_variables()) - names_before
    assert added == expected
    assert set(quantization.range_variables(model)) == expected
    assert quantization.has_ranges(added) and not quantization.has_ranges(names_before)


def test_traced_graph_has_one_fake_quant_per_tensor(tiny_icnet):
    model, state, images, _, _ = tiny_icnet
    state.active = True
    try:
        forward = tf.function(lambda x: model(model.preprocess(x), include_aux=True))
        graph = forward.get_concrete_function(tf.TensorSpec(images.shape, tf.float32)).graph
    finally:
        state.active = False
    types = [op.type for op in graph.get_operations()]
    num_layers = len(model.scoped_layers())
    assert types.count("FakeQuantWithMinMaxVarsPerChannel") == num_layers
    num_units = sum(count for _, count in BLOCKS)
    assert types.count("FakeQuantWithMinMaxVars") == num_layers + num_units + 2 + 3


def test_quantized_training_freezes_bn_and_trains_through_the_fold(tiny_icnet):
    model, state, images, _, _ = tiny_icnet
    conv = model.full_branch[1]
    moving = conv.bn.moving_mean.numpy().copy()
    state.active = True
    try:
        with tf.GradientTape() as tape:
            logits = model(model.preprocess(images), training=True)["logits"]
            loss = tf.reduce_mean(tf.square(logits))
        grads = tape.gradient(loss, [conv.conv.kernel, conv.bn.gamma, conv.bn.beta])
    finally:
        state.active = False
    np.testing.assert_array_equal(conv.bn.moving_mean.numpy(), moving)
    for grad in grads:
        assert grad is not None and np.abs(grad.numpy()).sum() > 0
    # The training step set every range from the batch.
    assert all(
        v.numpy() != 0
        for name, v in quantization.range_variables(model).items()
        if name.endswith("/max") and "Aux" not in name
    )


def test_range_variables_are_not_parameters(tiny_icnet):
    model, _, _, _, _ = tiny_icnet
    ranges = quantization.range_variables(model)
    assert len(ranges) > 100 and set(ranges) <= set(model.named_variables())
    # The oracle: the same architecture built without quantization-aware training.
    plain = ICNet(19, filter_scale=0.125, pooling_factors=(1, 2, 4))
    plain.build_variables((SIZE, SIZE))
    for include_aux in (False, True):
        for include_bn in (False, True):
            flags = dict(include_aux=include_aux, include_bn=include_bn)
            assert model.count_parameters(**flags) == plain.count_parameters(**flags), flags
