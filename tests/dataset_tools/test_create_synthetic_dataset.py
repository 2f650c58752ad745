"""Tests of the synthetic street-scene generator."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dataset_tools import create_synthetic_dataset as synthetic
from dataset_tools import synthetic_scene as scene
from tests.dataset_tools.helpers import decode, read_records


def _scene(seed: int, height: int = 64, width: int = 128):
    return scene.generate_scene(height, width, np.random.default_rng(seed))


def test_same_seed_same_scene_other_seed_other_scene():
    image, label = _scene(3)
    again_image, again_label = _scene(3)
    np.testing.assert_array_equal(image, again_image)
    np.testing.assert_array_equal(label, again_label)
    other_image, _ = _scene(4)
    assert not np.array_equal(image, other_image)


@pytest.mark.parametrize("seed", range(4))
def test_labels_are_train_ids_and_classes_are_textured(seed):
    image, label = _scene(seed, 128, 256)
    assert image.shape == (128, 256, 3) and image.dtype == np.uint8
    assert label.shape == (128, 256) and label.dtype == np.uint8
    classes = np.unique(label)
    assert set(classes.tolist()) <= set(scene.SYNTHETIC_CLASSES) <= set(range(19))
    assert len(classes) >= 6
    for class_id in classes:
        pixels = image[label == class_id].astype(np.float64)
        if len(pixels) >= 50:  # no flat single-colour class
            assert pixels.std(axis=0).max() > 3.0, f"class {class_id} is nearly flat"


@pytest.mark.parametrize("size", [(33, 65), (1, 1), (5, 3), (96, 40)])
def test_any_size_works(size):
    image, label = scene.generate_scene(*size, np.random.default_rng(0))
    assert image.shape == (*size, 3) and label.shape == size
    assert label.max() <= 18


def test_written_records_are_deterministic_and_readable(tmp_path):
    first = synthetic.write_synthetic_dataset(
        str(tmp_path / "a"), 3, 2, 33, 65, seed=7, preview_dir=str(tmp_path / "previews")
    )
    second = synthetic.write_synthetic_dataset(str(tmp_path / "b"), 3, 2, 33, 65, seed=7)
    other = synthetic.write_synthetic_dataset(str(tmp_path / "c"), 3, 2, 33, 65, seed=8)
    assert os.path.basename(first["train"]) == "synthetic_train.record"
    assert os.path.basename(first["val"]) == "synthetic_val.record"
    for split in ("train", "val"):
        with open(first[split], "rb") as a, open(second[split], "rb") as b:
            data = a.read()
            assert data == b.read()
        with open(other[split], "rb") as c:
            assert data != c.read()

    train, val = read_records(first["train"]), read_records(first["val"])
    assert len(train) == 3 and len(val) == 2
    assert train[0]["image"] != val[0]["image"]  # the splits come from different streams
    for index, row in enumerate(train):
        assert row["filename"] == f"synthetic/train/{index:06d}.png"
        assert (row["height"], row["width"], row["channels"], row["format"]) == (33, 65, 3, "png")
        image, label = scene.generate_scene(
            33, 65, np.random.default_rng([7, 0, index])
        )  # the documented per-example stream
        np.testing.assert_array_equal(decode(row["image"]), image)
        np.testing.assert_array_equal(tf.io.decode_png(row["label"], channels=1)[..., 0], label)

    previews = sorted(os.listdir(first["preview_dir"]))
    assert len(previews) == 3
    with Image.open(os.path.join(first["preview_dir"], previews[0])) as preview:
        assert preview.size == (2 * 65, 33)


def test_previews_show_the_scene_beside_its_labels_in_cityscapes_colours(tmp_path):
    paths = synthetic.write_previews(str(tmp_path), count=1, height=40, width=64, seed=5)
    image, label = scene.generate_scene(40, 64, np.random.default_rng([5, 0, 0]))
    with Image.open(paths[0]) as preview:
        pixels = np.asarray(preview.convert("RGB"))
    assert pixels.shape == (40, 128, 3)
    np.testing.assert_array_equal(pixels[:, :64], image)
    colours = pixels[:, 64:]
    # Hand-copied official colours (cityscapesScripts): road, sky, car.
    for train_id, rgb in ((0, (128, 64, 128)), (10, (70, 130, 180)), (13, (0, 0, 142))):
        if (label == train_id).any():
            np.testing.assert_array_equal(
                colours[label == train_id], np.tile(rgb, ((label == train_id).sum(), 1))
            )


def _run_widths(mask: np.ndarray) -> np.ndarray:
    """Lengths of the horizontal runs of True in a ``[H, W]`` mask, row by row."""
    edges = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    return np.flatnonzero(edges.ravel() == -1) - np.flatnonzero(edges.ravel() == 1)


def test_thin_objects_stay_wide_enough_for_a_quarter_resolution_output():
    # ICNet predicts at 1/4 of the input: a pole spans at least two logit columns (8 px).
    widths = np.concatenate(
        [_run_widths(_scene(seed, 256, 512)[1] == scene.POLE) for seed in range(8)]
    )
    assert widths.sum() > 1000  # poles occur
    narrow = widths[widths < 8].sum() / widths.sum()
    assert narrow < 0.1  # only where something in front of a pole or the border cuts it
