"""Tests of core.data.preprocessor: joint image/label transforms stay aligned.

The test image encodes its own source coordinates: channel 0 is a linear ramp
of the row, channel 1 of the column, channel 2 is 255 everywhere (so padded
pixels, which are 0, are told apart). Linear ramps survive bilinear, bicubic
and nearest resizing exactly (linear interpolation of a linear function), so
every output pixel says which source position it sampled. The label is a
coarse block pattern of class ids; at block interiors the label of an output
pixel must equal the block class of the source position its image value
names. Block borders are skipped: there, bilinear and nearest sampling may
legitimately fall on different sides.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from core.data import preprocessor

HEIGHT, WIDTH, BLOCK = 32, 48, 8
IGNORE = 255
ROW_STEP = 255.0 / (HEIGHT - 1)
COL_STEP = 255.0 / (WIDTH - 1)


def _block_class(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    # A few ids (1..5), none of them 0 or the ignore label.
    return 1 + ((rows // BLOCK) * 2 + (cols // BLOCK)) % 5


def _make_pair(height: int = HEIGHT, width: int = WIDTH) -> tuple[tf.Tensor, tf.Tensor]:
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    image = np.stack(
        [rows * ROW_STEP, cols * COL_STEP, np.full(rows.shape, 255.0)], axis=-1
    ).astype(np.float32)
    label = _block_class(rows, cols)[..., None].astype(np.int32)
    return tf.constant(image), tf.constant(label)


IMAGE, LABEL = _make_pair()
INPUT_CLASSES = set(np.unique(LABEL.numpy()).tolist())


def _check_aligned(
    image: tf.Tensor, label: tf.Tensor, strict: bool = True, min_checked: float = 0.2
) -> None:
    """Asserts label/image alignment, padding values and the label value set.

    Args:
      strict: check every content pixel (image resized bilinearly or with
        nearest neighbour, where the ramps are exact). Otherwise check only
        pixels at least one source pixel inside a block (bicubic, whose edge
        handling bends the ramps).
      min_checked: smallest fraction of content pixels that must be checked.
    """
    image, label = image.numpy(), label.numpy()[..., 0]
    assert image.shape[:2] == label.shape
    assert set(np.unique(label).tolist()) <= INPUT_CLASSES | {IGNORE}

    valid = image[..., 2] > 127.5
    # Padding: image 0 in every channel, label ignore; content never ignore.
    np.testing.assert_array_equal(image[~valid], 0.0)
    np.testing.assert_array_equal(label[~valid], IGNORE)
    assert not np.any(label[valid] == IGNORE)

    # Half-pixel centres: the bilinear kernel samples source position p, the
    # nearest-neighbour kernel picks source pixel floor(p + 0.5). When p + 0.5
    # is (up to float error) an integer n, either n - 1 or n is right.
    row_pos = image[..., 0] / ROW_STEP + 0.5
    col_pos = image[..., 1] / COL_STEP + 0.5
    if strict:
        eps = 1e-3
        allowed = np.zeros(label.shape, dtype=bool)
        for row_shift in (-eps, eps):
            for col_shift in (-eps, eps):
                rows = np.floor(row_pos + row_shift).astype(int)
                cols = np.floor(col_pos + col_shift).astype(int)
                allowed |= label == _block_class(rows, cols)
        checked = valid
    else:
        rows, cols = np.floor(row_pos).astype(int), np.floor(col_pos).astype(int)
        allowed = label == _block_class(rows, cols)
        checked = (
            valid
            & (rows % BLOCK >= 1)
            & (rows % BLOCK <= BLOCK - 2)
            & (cols % BLOCK >= 1)
            & (cols % BLOCK <= BLOCK - 2)
        )
    assert checked.sum() >= min_checked * valid.sum(), "too few pixels checked"
    misaligned = checked & ~allowed
    assert not misaligned.any(), (
        f"{misaligned.sum()} misaligned pixels, first at {np.argwhere(misaligned)[0]}"
    )


def _is_flipped(image: tf.Tensor) -> bool:
    columns = image.numpy()[0, :, 1]
    return bool(columns[0] > columns[-1])


# --------------------------------------------------------------------------- random_image_scale


def test_random_scale_keeps_alignment_and_spans_the_range():
    heights = []
    for seed in range(40):
        image, label = preprocessor.random_image_scale(IMAGE, LABEL, 0.5, 2.0, seed=seed)
        height, width = image.shape[:2]
        assert label.shape == (height, width, 1)
        assert label.dtype == tf.int32 and image.dtype == tf.float32
        # One factor for both sides: round(s*H), round(s*W).
        scale = height / HEIGHT
        assert abs(width - scale * WIDTH) <= 0.5 * WIDTH / HEIGHT + 0.51
        assert round(0.5 * HEIGHT) <= height <= round(2.0 * HEIGHT)
        _check_aligned(image, label)
        heights.append(height)
    assert min(heights) <= round(0.65 * HEIGHT)
    assert max(heights) >= round(1.85 * HEIGHT)


def test_random_scale_fixed_ratio_rounds_the_size():
    image, label = preprocessor.random_image_scale(IMAGE, LABEL, 1.5, 1.5, seed=0)
    assert image.shape == (48, 72, 3) and label.shape == (48, 72, 1)
    image, label = preprocessor.random_image_scale(IMAGE, LABEL, 0.33, 0.33, seed=0)
    assert image.shape == (round(0.33 * HEIGHT), round(0.33 * WIDTH), 3)
    _check_aligned(image, label)


def test_same_seed_same_draw_and_unseeded_calls_vary():
    first = preprocessor.random_image_scale(IMAGE, LABEL, seed=7)[0]
    second = preprocessor.random_image_scale(IMAGE, LABEL, seed=7)[0]
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    sizes = {preprocessor.random_image_scale(IMAGE, LABEL)[0].shape[0] for _ in range(10)}
    assert len(sizes) > 1


# --------------------------------------------------------------------------- random_image_crop


def test_random_crop_is_an_exact_aligned_window():
    offsets = set()
    for seed in range(20):
        image, label = preprocessor.random_image_crop(IMAGE, LABEL, 16, 24, seed=seed)
        assert image.shape == (16, 24, 3) and label.shape == (16, 24, 1)
        top = int(round(image[0, 0, 0].numpy() / ROW_STEP))
        left = int(round(image[0, 0, 1].numpy() / COL_STEP))
        np.testing.assert_array_equal(
            image.numpy(), IMAGE.numpy()[top : top + 16, left : left + 24]
        )
        np.testing.assert_array_equal(
            label.numpy(), LABEL.numpy()[top : top + 16, left : left + 24]
        )
        offsets.add((top, left))
    assert len(offsets) >= 10


def test_random_crop_pads_small_images_with_zero_and_ignore():
    image, label = preprocessor.random_image_crop(IMAGE, LABEL, 40, 56, ignore_label=IGNORE, seed=3)
    assert image.shape == (40, 56, 3)
    # Content stays top-left; padding is bottom/right.
    np.testing.assert_array_equal(image.numpy()[:HEIGHT, :WIDTH], IMAGE.numpy())
    np.testing.assert_array_equal(label.numpy()[:HEIGHT, :WIDTH], LABEL.numpy())
    assert np.all(image.numpy()[HEIGHT:] == 0) and np.all(image.numpy()[:, WIDTH:] == 0)
    assert np.all(label.numpy()[HEIGHT:] == IGNORE) and np.all(label.numpy()[:, WIDTH:] == IGNORE)
    _check_aligned(image, label)


def test_random_crop_pads_one_side_and_uses_the_given_ignore_label():
    image, label = preprocessor.random_image_crop(IMAGE, LABEL, 40, 24, ignore_label=99, seed=1)
    assert image.shape == (40, 24, 3)
    assert np.all(label.numpy()[HEIGHT:] == 99)
    assert not np.any(label.numpy()[:HEIGHT] == 99)


# --------------------------------------------------------------------------- random_horizontal_flip


def test_flip_happens_about_half_the_time_and_flips_both():
    flips = 0
    for seed in range(40):
        image, label = preprocessor.random_horizontal_flip(IMAGE, LABEL, seed=seed)
        if _is_flipped(image):
            flips += 1
            np.testing.assert_array_equal(image.numpy(), IMAGE.numpy()[:, ::-1])
            np.testing.assert_array_equal(label.numpy(), LABEL.numpy()[:, ::-1])
        else:
            np.testing.assert_array_equal(image.numpy(), IMAGE.numpy())
            np.testing.assert_array_equal(label.numpy(), LABEL.numpy())
    assert 10 <= flips <= 30


# --------------------------------------------------------------------------- deterministic resizes


def test_set_fixed_image_size():
    image, label = preprocessor.set_fixed_image_size(IMAGE, LABEL, 50, 30)
    assert image.shape == (50, 30, 3) and label.shape == (50, 30, 1)
    _check_aligned(image, label)


@pytest.mark.parametrize(
    "min_dim, max_dim, expected",
    [(40, 100, (40, 60)), (40, 50, (33, 50)), (16, 100, (16, 24))],
)
def test_aspect_ratio_resize_sizes(min_dim, max_dim, expected):
    image, label = preprocessor.aspect_ratio_image_resize(IMAGE, LABEL, min_dim, max_dim)
    assert image.shape[:2] == expected and label.shape[:2] == expected
    _check_aligned(image, label)


@pytest.mark.parametrize("method", ["bilinear", "nearest", "bicubic"])
def test_aspect_ratio_resize_methods_and_padding(method):
    image, label = preprocessor.aspect_ratio_image_resize(
        IMAGE, LABEL, 40, 50, resize_method=method, pad_to_max_dimension=True, ignore_label=IGNORE
    )
    assert image.shape == (50, 50, 3) and label.shape == (50, 50, 1)
    assert np.all(label.numpy()[33:] == IGNORE) and np.all(image.numpy()[33:] == 0)
    assert float(tf.reduce_min(image)) >= 0.0 and float(tf.reduce_max(image)) <= 255.0
    if method == "nearest":
        # Nearest copies source pixels: every channel-0 value is one of the input's.
        assert set(np.unique(image.numpy()[:33, :, 0])) <= set(np.unique(IMAGE.numpy()[..., 0]))
    _check_aligned(image, label, strict=method != "bicubic")


def test_aspect_ratio_resize_rejects_unknown_method():
    with pytest.raises(ValueError, match="resize_method"):
        preprocessor.aspect_ratio_image_resize(IMAGE, LABEL, resize_method="area")


# --------------------------------------------------------------------------- evaluation helpers


def test_pad_to_size():
    image, label = preprocessor.pad_to_size(IMAGE, LABEL, 33, 49)
    assert image.shape == (33, 49, 3) and label.shape == (33, 49, 1)
    np.testing.assert_array_equal(image.numpy()[:HEIGHT, :WIDTH], IMAGE.numpy())
    assert np.all(label.numpy()[HEIGHT, :] == IGNORE) and np.all(label.numpy()[:, WIDTH] == IGNORE)
    assert np.all(image.numpy()[HEIGHT, :] == 0)
    # Padding to the same size is a no-op.
    same, _ = preprocessor.pad_to_size(IMAGE, LABEL, HEIGHT, WIDTH)
    np.testing.assert_array_equal(same.numpy(), IMAGE.numpy())


def test_pad_to_size_rejects_larger_images_statically_and_at_run_time():
    with pytest.raises(ValueError, match=r"\[32, 48\].*\[20, 100\]"):
        preprocessor.pad_to_size(IMAGE, LABEL, 20, 100)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, 3], tf.float32),
            tf.TensorSpec([None, None, 1], tf.int32),
        ]
    )
    def pad(image, label):
        return preprocessor.pad_to_size(image, label, 20, 100)

    with pytest.raises(tf.errors.InvalidArgumentError, match=r"smaller size \[20, 100\]"):
        pad(IMAGE, LABEL)


def test_center_crop_is_central_and_deterministic():
    image, label = preprocessor.center_crop(IMAGE, LABEL, 16, 24)
    assert image.shape == (16, 24, 3)
    np.testing.assert_array_equal(image.numpy(), IMAGE.numpy()[8:24, 12:36])
    np.testing.assert_array_equal(label.numpy(), LABEL.numpy()[8:24, 12:36])
    # Larger than the image in height: padded bottom, centred in width.
    image, label = preprocessor.center_crop(IMAGE, LABEL, 40, 24)
    np.testing.assert_array_equal(image.numpy()[:HEIGHT], IMAGE.numpy()[:, 12:36])
    assert np.all(label.numpy()[HEIGHT:] == IGNORE)


# --------------------------------------------------------------------------- graph mode


def test_steps_run_in_a_tf_data_map_with_dynamic_shapes():
    def augment(image, label):
        image, label = preprocessor.random_image_scale(image, label, 0.5, 2.0)
        image, label = preprocessor.random_image_crop(image, label, 20, 28)
        return preprocessor.random_horizontal_flip(image, label)

    sizes = [(32, 48), (24, 40)]
    dataset = tf.data.Dataset.from_generator(
        lambda: (tuple(t.numpy() for t in _make_pair(h, w)) for h, w in sizes),
        output_signature=(
            tf.TensorSpec([None, None, 3], tf.float32),
            tf.TensorSpec([None, None, 1], tf.int32),
        ),
    ).map(augment, num_parallel_calls=2)
    # Crop sets a static shape, so examples batch.
    assert dataset.element_spec[0].shape == (20, 28, 3)
    assert dataset.element_spec[1].shape == (20, 28, 1)
    images, labels = next(iter(dataset.batch(2)))
    assert images.shape == (2, 20, 28, 3) and labels.shape == (2, 20, 28, 1)
    for value in np.unique(labels.numpy()):
        assert value in INPUT_CLASSES | {IGNORE}
