"""Tests of builders.preprocessor_builder from inline text protos."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from builders import preprocessor_builder
from protos import train_pb2

HEIGHT, WIDTH = 32, 48


def _steps(text: str):
    return text_format.Parse(text, train_pb2.TrainConfig()).preprocessor_step


def _inputs():
    rows, cols = np.meshgrid(np.arange(HEIGHT), np.arange(WIDTH), indexing="ij")
    image = np.stack([rows * 8.0, cols * 5.0, np.full(rows.shape, 255.0)], -1).astype(np.float32)
    label = (1 + (rows // 8 + cols // 8) % 4)[..., None].astype(np.int32)
    return tf.constant(image), tf.constant(label)


def test_original_training_recipe_gives_crop_size_in_config_order():
    # The preprocessing block of the original's Cityscapes configs.
    preprocess = preprocessor_builder.build(
        _steps(
            """
            preprocessor_step { random_image_scale { min_scale_ratio: 0.5 max_scale_ratio: 2.0 } }
            preprocessor_step {
              random_image_crop {
                crop_height: 40 crop_width: 56 images_channel_dim: 3 labels_channel_dim: 1
              }
            }
            preprocessor_step { random_horizontal_flip { } }
            """
        )
    )
    assert preprocess.step_names == (
        "random_image_scale",
        "random_image_crop",
        "random_horizontal_flip",
    )
    image, label = _inputs()
    for seed in range(5):
        out_image, out_label = preprocess(image, label, seed=seed)
        assert out_image.shape == (40, 56, 3) and out_label.shape == (40, 56, 1)
        assert set(np.unique(out_label)) <= {1, 2, 3, 4, 255}


def test_steps_apply_in_config_order():
    image, label = _inputs()
    crop_then_scale = preprocessor_builder.build(
        _steps(
            """
            preprocessor_step { random_image_crop { crop_height: 16 crop_width: 24 } }
            preprocessor_step { random_image_scale { min_scale_ratio: 2.0 max_scale_ratio: 2.0 } }
            """
        )
    )
    scale_then_crop = preprocessor_builder.build(
        _steps(
            """
            preprocessor_step { random_image_scale { min_scale_ratio: 2.0 max_scale_ratio: 2.0 } }
            preprocessor_step { random_image_crop { crop_height: 16 crop_width: 24 } }
            """
        )
    )
    assert crop_then_scale(image, label)[0].shape == (32, 48, 3)
    assert scale_then_crop(image, label)[0].shape == (16, 24, 3)

    fixed = preprocessor_builder.build(
        _steps(
            """
            preprocessor_step { set_fixed_image_size { fixed_height: 20 fixed_width: 30 } }
            preprocessor_step {
              aspect_ratio_image_resize { min_dimension: 10 max_dimension: 64
                                          pad_to_max_dimension: true }
            }
            """
        )
    )
    out_image, out_label = fixed(image, label)
    assert out_image.shape == (64, 64, 3)
    # 20x30 -> 10x15, then padded with the ignore label.
    assert np.all(out_label.numpy()[10:] == 255) and np.all(out_label.numpy()[:10, :15] != 255)


def test_no_steps_is_identity():
    preprocess = preprocessor_builder.build([])
    image, label = _inputs()
    out_image, out_label = preprocess(image, label)
    np.testing.assert_array_equal(out_image.numpy(), image.numpy())
    np.testing.assert_array_equal(out_label.numpy(), label.numpy())


def test_ignore_label_reaches_the_padding():
    preprocess = preprocessor_builder.build(
        _steps("preprocessor_step { random_image_crop { crop_height: 40 crop_width: 48 } }"),
        ignore_label=77,
    )
    image, label = _inputs()
    _, out_label = preprocess(image, label)
    assert np.all(out_label.numpy()[HEIGHT:] == 77)


def test_nearest_resize_method_copies_pixels():
    preprocess = preprocessor_builder.build(
        _steps(
            """
            preprocessor_step {
              aspect_ratio_image_resize {
                min_dimension: 50 max_dimension: 100 resize_method: NEAREST_NEIGHBOR
              }
            }
            """
        )
    )
    image, label = _inputs()
    out_image, _ = preprocess(image, label)
    assert out_image.shape == (50, 75, 3)
    assert set(np.unique(out_image.numpy()[..., 0])) <= set(np.unique(image.numpy()[..., 0]))


def test_seeded_calls_are_reproducible_and_steps_get_distinct_draws():
    preprocess = preprocessor_builder.build(
        _steps(
            """
            preprocessor_step { random_horizontal_flip { } }
            preprocessor_step { random_image_crop { crop_height: 16 crop_width: 16 } }
            """
        )
    )
    image, label = _inputs()
    first = preprocess(image, label, seed=tf.constant([3, 4], tf.int64))[0]
    again = preprocess(image, label, seed=tf.constant([3, 4], tf.int64))[0]
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    crops = {tuple(preprocess(image, label, seed=s)[0].numpy()[0, 0, :2]) for s in range(12)}
    assert len(crops) > 3


@pytest.mark.parametrize(
    "text, match",
    [
        ("preprocessor_step { random_horizontal_flip {} } preprocessor_step { }", r"\[1\] sets no"),
        ("preprocessor_step { random_image_crop { crop_width: 10 } }", r"\[0\]\.random_image_crop\.crop_height is not set"),
        ("preprocessor_step { random_image_crop { crop_height: 0 crop_width: 10 } }", r"crop_height must be > 0, got 0"),
        ("preprocessor_step { random_image_crop { crop_height: 5 crop_width: -3 } }", r"crop_width must be > 0, got -3"),
        ("preprocessor_step { random_image_crop { crop_height: 5 crop_width: 5 images_channel_dim: 1 } }", r"images_channel_dim"),
        ("preprocessor_step { random_image_scale { min_scale_ratio: 2.0 max_scale_ratio: 1.0 } }", r"min_scale_ratio \(2.0\) must be <= max_scale_ratio \(1.0\)"),
        ("preprocessor_step { random_image_scale { min_scale_ratio: 0 } }", r"random_image_scale\.min_scale_ratio must be > 0"),
        ("preprocessor_step { set_fixed_image_size { fixed_height: 10 } }", r"fixed_width is not set"),
        ("preprocessor_step { aspect_ratio_image_resize { min_dimension: 2000 } }", r"min_dimension \(2000\) must be <= max_dimension \(1024\)"),
    ],
)  # fmt: skip
def test_invalid_steps_raise_naming_index_and_field(text, match):
    with pytest.raises(preprocessor_builder.PreprocessorConfigError, match=match):
        preprocessor_builder.build(_steps(text))


def test_config_error_is_a_value_error():
    assert issubclass(preprocessor_builder.PreprocessorConfigError, ValueError)
