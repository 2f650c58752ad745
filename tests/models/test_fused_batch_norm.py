"""ConvBN's training-mode batch norm runs as one fused op and equals the textbook formula.

The oracle is batch norm written out with separate ops (``tf.nn.moments`` on the biased
variance, then ``(x - mean) * rsqrt(var + eps) * gamma + beta``) and differentiated by autodiff,
plus the moving-average update done in numpy.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.hyperparams import BatchNormParams, ConvHyperparams
from models.layers.conv_bn import ConvBN

DECAY = 0.75
EPS = 1e-3


def _block(center=True, scale=True, depthwise=False, filters=3):
    hyper = ConvHyperparams(
        batch_norm=BatchNormParams(decay=DECAY, epsilon=EPS, center=center, scale=scale)
    )
    block = ConvBN("Block", filters, 3, hyper, activation="relu", depthwise=depthwise)
    rng = np.random.default_rng(4)
    images = tf.constant(rng.normal(size=(2, 6, 7, 3)).astype(np.float32))
    block(images)
    bn = block.bn
    if scale:
        bn.gamma.assign(rng.uniform(0.5, 2.0, bn.gamma.shape).astype(np.float32))
    if center:
        bn.beta.assign(rng.normal(size=bn.beta.shape).astype(np.float32))
    bn.moving_mean.assign(rng.normal(size=bn.moving_mean.shape).astype(np.float32))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, bn.moving_variance.shape).astype(np.float32))
    return block, images


def _oracle(block, images):
    """Output, gradients (images, trainable weights) and the updated moving statistics."""
    bn = block.bn
    weights = block.trainable_weights
    with tf.GradientTape() as tape:
        tape.watch(images)
        conv = block.conv(images)
        mean, variance = tf.nn.moments(conv, axes=[0, 1, 2])
        y = (conv - mean) * tf.math.rsqrt(variance + EPS)
        if bn.scale:
            y = y * bn.gamma
        if bn.center:
            y = y + bn.beta
        y = tf.nn.relu(y)
        loss = tf.reduce_sum(y * y * tf.linspace(0.5, 1.5, y.shape[-1]))
    grads = tape.gradient(loss, [images, *weights])
    moving_mean = DECAY * bn.moving_mean.numpy() + (1 - DECAY) * mean.numpy()
    moving_variance = DECAY * bn.moving_variance.numpy() + (1 - DECAY) * variance.numpy()
    return y.numpy(), [g.numpy() for g in grads], moving_mean, moving_variance


def _fused(block, images):
    weights = block.trainable_weights

    @tf.function
    def step(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            y = block(images, training=True)
            loss = tf.reduce_sum(y * y * tf.linspace(0.5, 1.5, y.shape[-1]))
        return y, tape.gradient(loss, [images, *weights])

    y, grads = step(images)
    ops = {op.type for op in step.get_concrete_function(images).graph.get_operations()}
    return y.numpy(), [g.numpy() for g in grads], ops


@pytest.mark.parametrize(
    "center,scale,depthwise",
    [(True, True, False), (False, True, False), (True, False, False), (True, True, True)],
)
def test_training_batch_norm_matches_the_written_out_formula(center, scale, depthwise):
    block, images = _block(center, scale, depthwise)
    want_y, want_grads, want_mean, want_variance = _oracle(block, images)
    got_y, got_grads, ops = _fused(block, images)
    assert "FusedBatchNormV3" in ops and "FusedBatchNormGradV3" in ops
    # No separate moments: the statistics come out of the fused op.
    assert "SquaredDifference" not in ops and "Rsqrt" not in ops
    np.testing.assert_allclose(got_y, want_y, rtol=1e-4, atol=1e-4)
    for got, want in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(block.bn.moving_mean.numpy(), want_mean, rtol=1e-5, atol=1e-6)
    # The biased variance, as the Keras layer (not the op's unbiased n / (n - 1) one).
    np.testing.assert_allclose(
        block.bn.moving_variance.numpy(), want_variance, rtol=1e-5, atol=1e-6
    )


def test_a_stateless_scope_leaves_the_moving_statistics_alone():
    """The recomputation in train_mem_saving.py must not move them a second time."""
    block, images = _block()
    before = [v.numpy().copy() for v in block.bn.non_trainable_weights]
    with keras.StatelessScope():
        block(images, training=True)
    for variable, value in zip(block.bn.non_trainable_weights, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_a_frozen_batch_norm_layer_normalises_with_the_moving_statistics():
    block, images = _block()
    block.bn.trainable = False
    bn = block.bn
    conv = block.conv(images).numpy()
    want = (conv - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + EPS)
    want = np.maximum(want * bn.gamma.numpy() + bn.beta.numpy(), 0.0)
    before = bn.moving_mean.numpy().copy()
    np.testing.assert_allclose(block(images, training=True).numpy(), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)


def test_half_precision_inputs_normalise_in_float32():
    block, images = _block()
    want = block(images, training=True).numpy()
    conv = block.conv(images)
    got = block._batch_norm_training(tf.cast(conv, tf.float16))
    assert got.dtype == tf.float16
    np.testing.assert_allclose(np.maximum(got.numpy(), 0), want, rtol=1e-2, atol=1e-2)


def test_float64_inputs_take_the_keras_path_and_still_match():
    block, images = _block()
    conv = tf.cast(block.conv(images), tf.float64).numpy()
    want = (conv - conv.mean(axis=(0, 1, 2))) / np.sqrt(conv.var(axis=(0, 1, 2)) + EPS)
    want = want * block.bn.gamma.numpy() + block.bn.beta.numpy()
    got = block._batch_norm_training(tf.cast(block.conv(images), tf.float64))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)
