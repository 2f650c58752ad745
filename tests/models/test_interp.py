"""The Interp size convention and the align-corners bilinear resize against a numpy oracle."""

import numpy as np
import pytest
import tensorflow as tf

from models.layers.interp import interp, interp_size, resize_bilinear, resize_like
from tests.models.oracles import numpy_resize_align_corners


@pytest.mark.parametrize(
    "size, factor, expected",
    [
        (1025, 0.5, 513),  # the original's eval input shrunk for the 1/2 branch
        (513, 0.5, 257),
        (65, 0.5, 33),  # the mid downsample of block1's output
        (64, 0.5, 32),  # (63 * 0.5 + 1) = 32.5, floored
        (33, 2.0, 65),  # CFF zoom
        (129, 2.0, 257),
        (257, 4.0, 1025),  # final eval zoom: m + (m - 1) * 3
        (129, 8.0, 1025),  # PSPNet eval zoom
        (2049, 0.5, 1025),
        (7, 1.0, 7),
        (1, 4.0, 1),
    ],
)
def test_interp_size_matches_hand_computed(size, factor, expected):
    assert interp_size(size, factor) == expected


def test_interp_size_rejects_bad_values():
    with pytest.raises(ValueError, match="factor > 0"):
        interp_size(10, 0.0)
    with pytest.raises(ValueError, match="size >= 1"):
        interp_size(0, 2.0)


@pytest.mark.parametrize("in_hw, out_hw", [((5, 7), (9, 13)), ((9, 13), (5, 7)), ((4, 6), (7, 3))])
def test_resize_bilinear_matches_numpy_oracle(in_hw, out_hw):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, *in_hw, 3)).astype(np.float32)
    result = resize_bilinear(tf.constant(images), out_hw).numpy()
    expected = numpy_resize_align_corners(images.astype(np.float64), *out_hw)
    np.testing.assert_allclose(result, expected, atol=1e-5)


def test_interp_zoom_keeps_corners_and_grid_points():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(1, 5, 9, 2)).astype(np.float32)
    zoomed = interp(tf.constant(images), 4.0).numpy()
    assert zoomed.shape == (1, 17, 33, 2)
    # With the Interp size, every input pixel lands exactly on an output pixel.
    np.testing.assert_allclose(zoomed[:, ::4, ::4], images, atol=1e-6)


def test_interp_dynamic_shape_matches_static():
    images = tf.random.normal([1, 33, 65, 2])
    fn = tf.function(lambda x: interp(x, 2.0), input_signature=[tf.TensorSpec([1, None, None, 2])])
    dynamic = fn(images)
    static = interp(images, 2.0)
    assert dynamic.shape == static.shape == (1, 65, 129, 2)
    np.testing.assert_allclose(dynamic.numpy(), static.numpy(), atol=1e-6)


def test_resize_like_follows_reference():
    images = tf.random.normal([1, 4, 4, 3])
    reference = tf.zeros([1, 7, 9, 1])
    assert resize_like(images, reference).shape == (1, 7, 9, 3)
