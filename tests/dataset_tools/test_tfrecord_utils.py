"""Tests of the image/label readers and the progress logger of tfrecord_utils."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dataset_tools import tfrecord_utils
from dataset_tools.tfrecord_utils import DataError
from tests.dataset_tools.helpers import decode, save_png


def test_plain_rgb_files_are_kept_byte_for_byte(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    png = save_png(tmp_path / "a.png", image)
    Image.fromarray(image).save(tmp_path / "a.jpg")
    for path in (png, str(tmp_path / "a.jpg")):
        encoded, height, width = tfrecord_utils.load_rgb_image(path)
        with open(path, "rb") as handle:
            assert encoded == handle.read()
        assert (height, width) == (6, 9)


def test_other_images_become_rgb_png(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    encoded, _, _ = tfrecord_utils.load_rgb_image(save_png(tmp_path / "rgba.png", rgba))
    assert tfrecord_utils.image_format(encoded) == "png"
    np.testing.assert_array_equal(decode(encoded), rgba[..., :3])
    deep = tf.io.encode_png(tf.fill([5, 7, 3], tf.constant(40000, tf.uint16))).numpy()
    (tmp_path / "deep.png").write_bytes(deep)
    encoded, _, _ = tfrecord_utils.load_rgb_image(str(tmp_path / "deep.png"))
    assert encoded != deep and decode(encoded).dtype == np.uint8
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="junk.png"):
        tfrecord_utils.load_rgb_image(str(tmp_path / "junk.png"))


def test_read_label_indices_modes(tmp_path):
    values = np.array([[0, 1, 2], [3, 255, 7]], dtype=np.uint8)
    grey = save_png(tmp_path / "grey.png", values)
    np.testing.assert_array_equal(tfrecord_utils.read_label_indices(grey), values)
    Image.fromarray(values.astype(np.uint16)).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(
        tfrecord_utils.read_label_indices(str(tmp_path / "deep.png")), values
    )
    Image.fromarray(np.full((2, 3), 300, np.uint16)).save(tmp_path / "big.png")
    with pytest.raises(DataError, match="300"):
        tfrecord_utils.read_label_indices(str(tmp_path / "big.png"))
    Image.fromarray(values > 2).save(tmp_path / "bits.png")
    np.testing.assert_array_equal(
        tfrecord_utils.read_label_indices(str(tmp_path / "bits.png")), values > 2
    )
    rgb = save_png(tmp_path / "rgb.png", np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(DataError, match="'RGB'"):
        tfrecord_utils.read_label_indices(rgb)


def test_progress_logger_reports_count_rate_and_eta(caplog):
    progress = tfrecord_utils.ProgressLogger(total=3, what="images", interval_s=3600)
    with caplog.at_level(logging.INFO, logger="absl"):
        for _ in range(3):
            progress.step()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2  # the first and the last; the interval silences the middle
    assert messages[0].startswith("1/3 images (") and "ETA" in messages[0]
    assert messages[1].startswith("3/3 images (") and "ETA 0s" in messages[1]
