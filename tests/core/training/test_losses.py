"""Tests of the segmentation losses against a numpy oracle."""

import numpy as np
import pytest
import tensorflow as tf

from core.training import losses
from core.training.losses import SoftmaxLossConfig, WeightedLoss


def _numpy_ce(logits, labels, ignore, class_weights=None):
    """Mean over non-ignored pixels of -log softmax(logits)[label] (x class weight)."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    total, count = 0.0, 0
    for index in np.ndindex(labels.shape):
        label = labels[index]
        if label == ignore:
            continue
        weight = 1.0 if class_weights is None else class_weights[label]
        total += -log_probs[index + (label,)] * weight
        count += 1
    return total / count if count else 0.0


def test_cross_entropy_matches_numpy_with_ignored_pixels():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7, 4)).astype(np.float32) * 3
    labels = rng.integers(0, 4, size=(2, 5, 7)).astype(np.int32)
    labels[0, :2] = 255
    labels[1, :, 3] = 255
    config = SoftmaxLossConfig(num_classes=4)
    got = losses.softmax_cross_entropy(logits, labels[..., None], config)
    np.testing.assert_allclose(got.numpy(), _numpy_ce(logits, labels, 255), rtol=1e-5)


def test_class_weights_and_custom_ignore_label():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=(1, 4, 4)).astype(np.int32)
    labels[0, 0] = 0  # a custom ignore label that is also a class id
    weights = (0.5, 2.0, 1.0)
    config = SoftmaxLossConfig(num_classes=3, ignore_label=0, class_weights=weights)
    got = losses.softmax_cross_entropy(logits, labels[..., None], config)
    np.testing.assert_allclose(got.numpy(), _numpy_ce(logits, labels, 0, weights), rtol=1e-5)


def test_labels_are_subsampled_with_align_corners():
    # 9x9 labels to 3x3 logits: align-corners nearest takes rows/cols 0, 4, 8.
    labels = np.arange(81, dtype=np.int32).reshape(1, 9, 9, 1) % 7
    resized = losses.resize_labels(labels, (3, 3)).numpy()
    np.testing.assert_array_equal(resized[0, :, :, 0], labels[0, ::4, ::4, 0])
    logits = np.random.default_rng(2).normal(size=(1, 3, 3, 7)).astype(np.float32)
    got = losses.softmax_cross_entropy(logits, labels, SoftmaxLossConfig(num_classes=7))
    np.testing.assert_allclose(
        got.numpy(), _numpy_ce(logits, labels[:, ::4, ::4, 0], 255), rtol=1e-5
    )


def test_upsample_logits_resizes_logits_to_the_labels():
    # Logits constant in space stay constant under bilinear upsampling.
    row = np.array([2.0, -1.0, 0.5], dtype=np.float32)
    logits = np.broadcast_to(row, (1, 2, 2, 3)).copy()
    labels = np.array([[0, 1, 2, 255, 1]], dtype=np.int32).reshape(1, 1, 5, 1)
    labels = np.repeat(labels, 3, axis=1)
    config = SoftmaxLossConfig(num_classes=3, upsample_logits=True)
    got = losses.softmax_cross_entropy(logits, labels, config)
    big = np.broadcast_to(row, (1, 3, 5, 3))
    np.testing.assert_allclose(got.numpy(), _numpy_ce(big, labels[..., 0], 255), rtol=1e-5)


def test_all_ignored_gives_zero():
    logits = np.zeros((1, 2, 2, 3), dtype=np.float32)
    labels = np.full((1, 2, 2, 1), 255, dtype=np.int32)
    assert losses.softmax_cross_entropy(logits, labels, SoftmaxLossConfig(3)).numpy() == 0.0


def test_label_outside_the_classes_is_a_clear_error():
    logits = np.zeros((1, 2, 2, 3), dtype=np.float32)
    labels = np.array([0, 1, 7, 255], dtype=np.int32).reshape(1, 2, 2, 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"outside \[0, 3\).*\n?.*7"):
        losses.softmax_cross_entropy(logits, labels, SoftmaxLossConfig(3))
    fn = tf.function(lambda x, y: losses.softmax_cross_entropy(x, y, SoftmaxLossConfig(3)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes"):
        fn(logits, labels)


def test_weighted_loss_counts_each_weight_once_and_skips_missing_outputs():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, size=(1, 8, 8, 1)).astype(np.int32)
    outputs = {
        "main": rng.normal(size=(1, 4, 4, 3)).astype(np.float32),
        "aux": rng.normal(size=(1, 2, 2, 3)).astype(np.float32),
    }
    loss = WeightedLoss(SoftmaxLossConfig(3), {"main": 1.0, "aux": 0.4, "absent": 0.4})
    result = loss(outputs, labels)
    # Align-corners nearest from 8 to 4 samples round(i * 7 / 3) = 0, 2, 5, 7; 8 to 2: 0, 7.
    main_labels = labels[:, [0, 2, 5, 7]][:, :, [0, 2, 5, 7], 0]
    aux_labels = labels[:, [0, 7]][:, :, [0, 7], 0]
    main = _numpy_ce(outputs["main"], main_labels, 255)
    aux = _numpy_ce(outputs["aux"], aux_labels, 255)
    assert set(result) == {"main", "aux", "total"}
    np.testing.assert_allclose(result["main"].numpy(), main, rtol=1e-5)
    np.testing.assert_allclose(result["aux"].numpy(), aux, rtol=1e-5)
    np.testing.assert_allclose(result["total"].numpy(), main + 0.4 * aux, rtol=1e-5)
    with pytest.raises(ValueError, match="none of the loss outputs"):
        WeightedLoss(SoftmaxLossConfig(3), {"x": 1.0})(outputs, labels)


def test_config_validation():
    with pytest.raises(ValueError, match="class_weights has 2 values for 3 classes"):
        SoftmaxLossConfig(3, class_weights=(1.0, 2.0))
