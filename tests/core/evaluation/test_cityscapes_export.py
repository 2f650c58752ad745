"""Tests of the Cityscapes label-id PNG writer."""

import numpy as np
import pytest
from PIL import Image

from core.evaluation.cityscapes_export import (
    PredictionWriter,
    is_cityscapes_name,
    prediction_filename,
    train_ids_to_label_ids,
)

CITYSCAPES_IMAGE = (
    "/data/cityscapes/leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"
)


def test_prediction_filename_keeps_the_image_base_name():
    assert prediction_filename(CITYSCAPES_IMAGE) == "frankfurt_000000_000294_leftImg8bit.png"
    assert prediction_filename(CITYSCAPES_IMAGE.encode()) == (
        "frankfurt_000000_000294_leftImg8bit.png"
    )
    assert prediction_filename("photos/street_01.jpg") == "street_01.png"
    assert is_cityscapes_name("frankfurt_000000_000294_leftImg8bit.png")
    assert not is_cityscapes_name("street_01.png")
    with pytest.raises(ValueError, match="image/filename"):
        prediction_filename("")


def test_train_ids_map_to_hand_written_label_ids():
    train_ids = np.array([[0, 1, 2], [10, 13, 18]])
    expected = np.array([[7, 8, 11], [23, 26, 33]], dtype=np.uint8)
    np.testing.assert_array_equal(train_ids_to_label_ids(train_ids), expected)
    with pytest.raises(ValueError, match=r"\[19, 255\] have no Cityscapes label id"):
        train_ids_to_label_ids(np.array([[0, 19, 255]]))


def test_writer_writes_label_id_pngs_and_refuses_duplicate_names(tmp_path):
    writer = PredictionWriter(str(tmp_path))
    path = writer.write(CITYSCAPES_IMAGE, np.array([[0, 13], [18, 5]]))
    assert path == str(tmp_path / "frankfurt_000000_000294_leftImg8bit.png")
    written = Image.open(path)
    assert written.mode == "L"
    np.testing.assert_array_equal(np.array(written), [[7, 26], [33, 17]])
    with pytest.raises(ValueError, match="same prediction file"):
        writer.write("/elsewhere/frankfurt_000000_000294_leftImg8bit.png", np.zeros((2, 2)))
    writer.reset()  # a new pass may write the same names again
    writer.write(CITYSCAPES_IMAGE, np.zeros((2, 2), np.int32))
    assert writer.num_written == 1


def test_writer_without_mapping_writes_class_ids(tmp_path):
    writer = PredictionWriter(str(tmp_path), label_ids=None)
    path = writer.write("a/b/scene.png", np.array([[0, 3, 40]]))
    np.testing.assert_array_equal(np.array(Image.open(path)), [[0, 3, 40]])
    with pytest.raises(ValueError, match="8-bit PNG"):
        writer.write("a/b/other.png", np.array([[300]]))
