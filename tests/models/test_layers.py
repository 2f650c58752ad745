"""Pyramid pooling, cascade feature fusion, conv blocks and width rules."""

import numpy as np
import pytest
import tensorflow as tf

from models.hyperparams import BatchNormParams, ConvHyperparams
from models.layers.cascade_feature_fusion import CascadeFeatureFusion
from models.layers.conv_bn import ConvBN, PredictionConv
from models.layers.pyramid_pooling import (
    FastPyramidPooling,
    PyramidPoolingModule,
    fast_pyramid_pool_sum,
    pool_kernel,
)
from models.widths import WidthResolver, make_divisible
from tests.models.oracles import numpy_resize_align_corners

HYPER = ConvHyperparams()


def numpy_fast_psp(features: np.ndarray, factors) -> np.ndarray:
    """Oracle: input + sum over factors of upsample(avg_pool(kernel = stride = (h//f, w//f)))."""
    _, h, w, _ = features.shape
    total = features.copy()
    for f in factors:
        kh, kw = int(h / f), int(w / f)
        bins_h, bins_w = (h - kh) // kh + 1, (w - kw) // kw + 1
        pooled = np.zeros((features.shape[0], bins_h, bins_w, features.shape[3]))
        for i in range(bins_h):
            for j in range(bins_w):
                window = features[:, i * kh : (i + 1) * kh, j * kw : (j + 1) * kw]
                pooled[:, i, j] = window.mean(axis=(1, 2))
        total += numpy_resize_align_corners(pooled, h, w)
    return total


@pytest.mark.parametrize("chained", [True, False])
def test_fast_psp_sum_matches_numpy_oracle(chained):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2, 7, 11, 3)).astype(np.float32)
    result = fast_pyramid_pool_sum(tf.constant(features), (1, 2, 3, 4), chained).numpy()
    expected = numpy_fast_psp(features.astype(np.float64), (1, 2, 3, 4))
    np.testing.assert_allclose(result, expected, atol=1e-5)


def test_pool_kernel_follows_original_and_rejects_tiny_maps():
    # 33x65 (ICNet at 1025x2049) with f=3 pools 11x21 windows.
    assert pool_kernel(33, 65, 3) == (11, 21)
    assert pool_kernel(90, 90, 6) == (15, 15)
    with pytest.raises(ValueError, match="too small for pooling factor 4"):
        pool_kernel(2, 4, 4)


def test_fast_psp_needs_static_size():
    module = FastPyramidPooling((1, 2), WidthResolver(0.25), HYPER)
    fn = tf.function(lambda x: module(x), input_signature=[tf.TensorSpec([1, None, None, 8])])
    with pytest.raises(ValueError, match="static feature-map size"):
        fn.get_concrete_function()


def test_fast_psp_module_output_and_scope():
    module = FastPyramidPooling((1, 2, 3, 4), WidthResolver(0.25), HYPER)
    out = module(tf.random.normal([1, 9, 17, 16]))
    assert out.shape == (1, 9, 17, 128)
    assert out.numpy().min() >= 0.0 and out.numpy().max() <= 6.0  # relu6
    assert [layer.scope for layer in module.scoped_layers()] == ["FastPSPModule/Conv"]


def test_psp_module_concatenates_input_first_and_never_scales_branches():
    widths = WidthResolver(0.5)
    module = PyramidPoolingModule((1, 2, 3, 6), widths, HYPER)
    out = module(tf.random.normal([1, 12, 12, 64]))
    assert out.shape == (1, 12, 12, 256)
    scopes = {layer.scope: layer for layer in module.scoped_layers()}
    assert list(scopes) == [f"PSPModule/Conv{s}" for s in ("", "_1", "_2", "_3", "_4")]
    assert all(scopes[f"PSPModule/Conv{s}"].filters == 512 for s in ("", "_1", "_2", "_3"))
    # The 3x3 fuse conv sees the input (64) plus 4 levels of 512 channels.
    assert scopes["PSPModule/Conv_4"].conv.kernel.shape == (3, 3, 64 + 4 * 512, 256)


def test_cff_shapes_and_upsampled_output():
    unit = CascadeFeatureFusion("CascadeFeatureFusion", WidthResolver(0.25), HYPER)
    coarse = tf.random.normal([2, 5, 9, 32])
    fine = tf.random.normal([2, 9, 17, 16])
    fused, upsampled = unit(coarse, fine)
    assert fused.shape == (2, 9, 17, 64)
    assert upsampled.shape == (2, 9, 17, 32)
    assert fused.numpy().min() >= 0.0
    assert unit.dilated_conv.conv.dilation_rate == (2, 2)
    assert unit.dilated_conv.activation is None and unit.projection_conv.activation is None
    # A fine map that is not on the Interp grid still fuses (the coarse path is resized).
    fused, _ = unit(coarse, tf.random.normal([2, 10, 18, 16]))
    assert fused.shape == (2, 10, 18, 64)


def test_explicit_padding_matches_slim_conv2d_same():
    """slim pads a stride-2 3x3 by (1, 1); TF 'SAME' would pad (0, 1) on an even input."""
    images = tf.reshape(tf.range(64, dtype=tf.float32), [1, 8, 8, 1])
    results = {}
    for padding in ("explicit", "same"):
        block = ConvBN("conv", 1, 3, HYPER, stride=2, padding=padding)
        block(images)
        block.conv.kernel.assign(tf.ones([3, 3, 1, 1]))
        results[padding] = block(images).numpy()[0, :, :, 0] * np.sqrt(1 + 1e-5)  # undo BN
    x = images.numpy()[0, :, :, 0]
    assert results["explicit"].shape == results["same"].shape == (4, 4)
    np.testing.assert_allclose(results["explicit"][0, 0], x[0:2, 0:2].sum(), rtol=1e-5)
    np.testing.assert_allclose(results["same"][0, 0], x[0:3, 0:3].sum(), rtol=1e-5)


def test_conv_bn_slim_variables_and_regularizer():
    hyper = ConvHyperparams(
        batch_norm=BatchNormParams(decay=0.9, center=True, scale=False), regularizer_weight=0.1
    )
    block = ConvBN("Head/Conv", 4, 3, hyper, activation="relu6")
    block(tf.zeros([1, 5, 5, 2]))
    names = block.slim_variables()
    assert set(names) == {
        "Head/Conv/weights",
        "Head/Conv/BatchNorm/beta",
        "Head/Conv/BatchNorm/moving_mean",
        "Head/Conv/BatchNorm/moving_variance",
    }
    assert isinstance(names["Head/Conv/weights"], tf.Variable)
    # slim's l2_regularizer: weight * sum(w^2) / 2.
    kernel = block.conv.kernel.numpy()
    np.testing.assert_allclose(float(sum(block.losses)), 0.1 * (kernel**2).sum() / 2, rtol=1e-5)
    assert block.bn.momentum == 0.9


def test_prediction_conv_has_bias_and_slim_names():
    head = PredictionConv("Predictions/Conv", 19, HYPER)
    assert head(tf.zeros([1, 3, 3, 8])).shape == (1, 3, 3, 19)
    shapes = {k: tuple(v.shape) for k, v in head.slim_variables().items()}
    assert shapes == {"Predictions/Conv/weights": (1, 1, 8, 19), "Predictions/Conv/biases": (19,)}


def test_width_resolver_rules():
    widths = WidthResolver(0.5, {"A/Conv": 7})
    assert widths.width("A/Conv", 64) == 7
    assert widths.width("B/Conv", 64) == 32
    assert widths.width("C/Conv", 512, scalable=False) == 512
    assert widths.width("D/Conv", 24, divisible_by=8) == 16  # slim rounds 12 up to 16
    assert WidthResolver(0.3).width("E", 64) == 19  # int(64 * 0.3), as the pruner's int(c * f)
    widths.check_all_used("test")
    assert make_divisible(144, 8) == 144 and make_divisible(12, 8) == 16


def test_width_resolver_errors():
    with pytest.raises(ValueError, match=r"filter_scale must be in \(0, 1\]"):
        WidthResolver(0.0)
    with pytest.raises(ValueError, match="positive int"):
        WidthResolver(1.0, {"A": 0})
    widths = WidthResolver(1.0, {"Nope/Conv": 3})
    widths.width("A/Conv", 8)
    with pytest.raises(ValueError, match=r"name no conv of this model: \['Nope/Conv'\]"):
        widths.check_all_used("test")


def _randomise_bn(block: ConvBN, rng: np.random.Generator) -> None:
    channels = block.bn.moving_mean.shape[0]
    block.bn.moving_mean.assign(rng.normal(size=channels).astype(np.float32))
    block.bn.moving_variance.assign(rng.uniform(0.2, 3.0, size=channels).astype(np.float32))
    if block.bn.scale:
        block.bn.gamma.assign(rng.uniform(0.5, 2.0, size=channels).astype(np.float32))
    if block.bn.center:
        block.bn.beta.assign(rng.normal(size=channels).astype(np.float32))


def _numpy_batch_norm(y: np.ndarray, block: ConvBN) -> np.ndarray:
    bn = block.bn
    out = (y - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    if bn.scale:
        out = out * bn.gamma.numpy()
    if bn.center:
        out = out + bn.beta.numpy()
    return out


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(filters=6),
        dict(filters=6, rate=2),
        dict(filters=6, stride=2, padding="explicit"),
        dict(filters=6, stride=2, padding="same"),
        dict(filters=0, depthwise=True, rate=2),
        dict(filters=0, depthwise=True, stride=2, padding="explicit"),
    ],
)
@pytest.mark.parametrize("center_scale", [(True, True), (False, False)])
def test_inference_folds_batch_norm_into_the_conv_exactly(kwargs, center_scale):
    """Eval mode runs one conv with a scaled kernel and a bias; it must equal conv -> BN."""
    center, scale = center_scale
    hyper = ConvHyperparams(batch_norm=BatchNormParams(center=center, scale=scale, epsilon=1e-3))
    block = ConvBN("Block", kernel_size=3, hyperparams=hyper, activation="relu", **kwargs)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=(2, 11, 13, 4)).astype(np.float32))
    block(images)
    _randomise_bn(block, rng)
    x = images
    if block._pads is not None:
        before, after = block._pads
        x = tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]])
    conv_only = block.conv(x).numpy()  # the conv layer alone, no BN
    expected = np.maximum(_numpy_batch_norm(conv_only, block), 0.0)
    np.testing.assert_allclose(block(images, training=False).numpy(), expected, atol=1e-4)
    # Frozen BN during training (batch_norm.train false) takes the same folded path, and its
    # gradients equal those of the unfolded conv -> BN.
    frozen = ConvBN(
        "Frozen",
        kernel_size=3,
        hyperparams=ConvHyperparams(batch_norm=BatchNormParams(train=False)),
        **kwargs,
    )
    frozen(images)
    _randomise_bn(frozen, rng)
    variables = [frozen.conv.kernel, frozen.bn.gamma, frozen.bn.beta]
    with tf.GradientTape(persistent=True) as tape:
        folded = tf.reduce_sum(tf.sin(frozen(images, training=True)))
        plain = tf.reduce_sum(tf.sin(frozen.bn(frozen.conv(x), training=False)))
    np.testing.assert_allclose(folded.numpy(), plain.numpy(), rtol=1e-4, atol=1e-4)
    gradients = zip(tape.gradient(folded, variables), tape.gradient(plain, variables), strict=True)
    for got, want in gradients:
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-3, atol=1e-4)


def test_training_with_batch_statistics_still_updates_the_moving_averages():
    hyper = ConvHyperparams(batch_norm=BatchNormParams(decay=0.5))
    block = ConvBN("Block", 3, 1, hyper)
    images = tf.constant(np.random.default_rng(1).normal(size=(4, 5, 5, 2)).astype(np.float32))
    block(images)
    block.conv.kernel.assign(tf.ones([1, 1, 2, 3]))
    out = block(images, training=True).numpy()
    y = images.numpy().sum(axis=-1, keepdims=True).repeat(3, axis=-1)
    mean, var = y.mean(axis=(0, 1, 2)), y.var(axis=(0, 1, 2))
    np.testing.assert_allclose(out, (y - mean) / np.sqrt(var + 1e-5), atol=1e-4)
    np.testing.assert_allclose(block.bn.moving_mean.numpy(), 0.5 * mean, atol=1e-5)
