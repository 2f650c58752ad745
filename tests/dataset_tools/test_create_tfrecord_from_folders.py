"""Tests of the custom-dataset converter (image folder + label folder -> TFRecord)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dataset_tools import create_tfrecord_from_folders as folders
from dataset_tools.tfrecord_utils import DataError
from tests.dataset_tools.helpers import decode, read_records, save_png

HEIGHT, WIDTH = 24, 40
RAW_VALUES = np.array([0, 10, 20, 255], dtype=np.uint8)


@pytest.fixture
def dataset(tmp_path):
    """images/{a.jpg, b.png, sub/c.png} and labels/{a,b,sub/c}_label.png with raw values."""
    rng = np.random.default_rng(1)
    image_dir, label_dir = tmp_path / "images", tmp_path / "labels"
    sources = {}
    for key, extension in (("a", ".jpg"), ("b", ".png"), (os.path.join("sub", "c"), ".png")):
        image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        path = image_dir / (key + extension)
        path.parent.mkdir(parents=True, exist_ok=True)
        if extension == ".jpg":
            Image.fromarray(image).save(path, quality=90)
        else:
            save_png(path, image)
        label = rng.choice(RAW_VALUES, (HEIGHT, WIDTH)).astype(np.uint8)
        save_png(label_dir / (key + "_label.png"), label)
        sources[key] = (str(path), image, label)
    return image_dir, label_dir, sources


def _convert(dataset, tmp_path, **kwargs):
    image_dir, label_dir, _ = dataset
    kwargs.setdefault("label_suffix", "_label")
    output = str(tmp_path / "out" / "custom.record")
    return read_records(
        folders.convert_folders(str(image_dir), str(label_dir), output, **kwargs)[0]
    )


def test_label_map_text_file_is_applied(dataset, tmp_path):
    label_map = tmp_path / "map.txt"
    label_map.write_text("# raw class\n0 0\n10: 1\n20 -> 2\n")
    rows = _convert(dataset, tmp_path, label_map_path=str(label_map), num_classes=3)
    expected = np.full(256, 255, np.uint8)
    expected[[0, 10, 20]] = [0, 1, 2]
    _, _, sources = dataset
    assert len(rows) == 3
    for row, key in zip(rows, sorted(sources), strict=True):
        path, image, raw = sources[key]
        assert row["filename"] == path
        np.testing.assert_array_equal(decode(row["label"]), expected[raw])
        assert (row["height"], row["width"], row["channels"]) == (HEIGHT, WIDTH, 3)
        if path.endswith(".png"):
            np.testing.assert_array_equal(decode(row["image"]), image)


def test_jpeg_is_stored_unchanged_and_decodes(dataset, tmp_path):
    rows = _convert(dataset, tmp_path, unmapped="ignore", label_map_path=None)
    _, _, sources = dataset
    jpeg_path = sources["a"][0]
    with open(jpeg_path, "rb") as handle:
        assert rows[0]["image"] == handle.read()
    assert rows[0]["format"] == "jpeg" and rows[1]["format"] == "png"
    decoded = tf.io.decode_image(rows[0]["image"], channels=3).numpy()
    assert decoded.shape == (HEIGHT, WIDTH, 3)
    with Image.open(jpeg_path) as image:
        pil = np.array(image)
    assert np.abs(decoded.astype(int) - pil).mean() < 2  # IDCTs differ by a few levels


def test_json_label_map_and_unmapped_values(dataset, tmp_path):
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"0": 0, "10": 1}))
    with pytest.raises(DataError, match=r"\[20\].*--unmapped_label=ignore"):
        _convert(dataset, tmp_path, label_map_path=str(label_map))
    rows = _convert(dataset, tmp_path, label_map_path=str(label_map), unmapped="ignore")
    raw = dataset[2]["a"][2]
    expected = np.where(raw == 0, 0, np.where(raw == 10, 1, 255))
    np.testing.assert_array_equal(decode(rows[0]["label"]), expected)


def test_out_of_range_label_names_the_file(dataset, tmp_path):
    with pytest.raises(DataError) as error:
        _convert(dataset, tmp_path, num_classes=15)
    message = str(error.value)
    assert str(dataset[1] / "a_label.png") in message
    assert "[20]" in message and "--num_classes=15" in message
    assert not (tmp_path / "out" / "custom.record").exists()


def test_colour_label_is_refused_with_advice(dataset, tmp_path):
    image_dir, label_dir, _ = dataset
    save_png(label_dir / "b_label.png", np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    with pytest.raises(DataError, match="single-channel.*palette"):
        _convert(dataset, tmp_path)


def test_palette_label_is_read_as_indices_and_grey_image_becomes_rgb(dataset, tmp_path):
    image_dir, label_dir, sources = dataset
    indices = np.tile(np.arange(4, dtype=np.uint8), (HEIGHT, WIDTH // 4))
    palette_label = Image.fromarray(indices, mode="P")
    palette_label.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    palette_label.save(label_dir / "b_label.png")
    grey = np.random.default_rng(2).integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
    save_png(image_dir / "b.png", grey)
    rows = _convert(dataset, tmp_path)
    np.testing.assert_array_equal(decode(rows[1]["label"]), indices)
    tf_label = tf.io.decode_png(rows[1]["label"], channels=1)[..., 0].numpy()
    np.testing.assert_array_equal(tf_label, indices)  # stored as L, so TF sees indices too
    np.testing.assert_array_equal(decode(rows[1]["image"]), np.stack([grey] * 3, axis=-1))


def test_unpaired_files_are_named(dataset, tmp_path):
    image_dir, label_dir, _ = dataset
    os.remove(label_dir / "sub" / "c_label.png")
    with pytest.raises(DataError) as error:
        _convert(dataset, tmp_path)
    assert str(label_dir / "sub" / "c_label.png") in str(error.value)
    save_png(label_dir / "sub" / "c_label.png", np.zeros((HEIGHT, WIDTH), np.uint8))
    save_png(label_dir / "orphan_label.png", np.zeros((HEIGHT, WIDTH), np.uint8))
    with pytest.raises(DataError, match="orphan_label.png"):
        _convert(dataset, tmp_path)


def test_same_folder_needs_a_label_suffix(tmp_path):
    save_png(tmp_path / "x.png", np.zeros((4, 4, 3), np.uint8))
    save_png(tmp_path / "x_label.png", np.zeros((4, 4), np.uint8))
    assert folders.find_folder_pairs(str(tmp_path), str(tmp_path), label_suffix="_label") == [
        (str(tmp_path / "x.png"), str(tmp_path / "x_label.png"))
    ]
    with pytest.raises(DataError, match="--label_suffix"):
        folders.find_folder_pairs(str(tmp_path), str(tmp_path))


def test_bad_label_map_files(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("0 0\n3 300\n")
    with pytest.raises(DataError, match="line 2"):
        folders.load_label_map(str(bad))
    bad.write_text("0 0\n0 1\n")
    with pytest.raises(DataError, match="twice"):
        folders.load_label_map(str(bad))
    with pytest.raises(FileNotFoundError):
        folders.load_label_map(str(tmp_path / "missing.txt"))
