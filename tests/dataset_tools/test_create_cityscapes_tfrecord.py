"""Tests of the Cityscapes converter on a tiny fake Cityscapes tree."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from dataset_tools import create_cityscapes_tfrecord as cityscapes
from dataset_tools.tfrecord_utils import DataError
from tests.dataset_tools.helpers import decode, read_records, save_png

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The oracle, written from the cityscapesScripts table (anchors.md section 5), not from the code.
TRAIN_ID_OF_LABEL_ID = {
    7: 0,  # road
    8: 1,  # sidewalk
    11: 2,  # building
    12: 3,  # wall
    13: 4,  # fence
    17: 5,  # pole
    19: 6,  # traffic light
    20: 7,  # traffic sign
    21: 8,  # vegetation
    22: 9,  # terrain
    23: 10,  # sky
    24: 11,  # person
    25: 12,  # rider
    26: 13,  # car
    27: 14,  # truck
    28: 15,  # bus
    31: 16,  # train
    32: 17,  # motorcycle
    33: 18,  # bicycle
}
ORACLE = np.full(256, 255, dtype=np.uint8)
for _label_id, _train_id in TRAIN_ID_OF_LABEL_ID.items():
    ORACLE[_label_id] = _train_id

# Ignored ids (unlabeled, ego vehicle, ground, parking, guard rail, caravan) and evaluated ones.
LABEL_IDS = np.array([0, 1, 6, 9, 14, 29, 7, 8, 11, 17, 21, 23, 24, 26, 33], dtype=np.uint8)
HEIGHT, WIDTH = 32, 64
FRAMES = {
    "aachen": ("000000_000019", "000001_000019", "000002_000019"),
    "bochum": ("000000_001097",),
}


def _image_path(root, split, city, frame):
    return root / "leftImg8bit" / split / city / f"{city}_{frame}_leftImg8bit.png"


def _label_path(root, split, city, frame, kind="labelIds"):
    return root / "gtFine" / split / city / f"{city}_{frame}_gtFine_{kind}.png"


@pytest.fixture
def tree(tmp_path):
    """A fake Cityscapes root with labelIds only; returns (root, {stem: (image, label_ids)})."""
    rng = np.random.default_rng(0)
    root = tmp_path / "cityscapes"
    sources = {}
    for city, frames in FRAMES.items():
        for frame in frames:
            image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            label = rng.choice(LABEL_IDS, (HEIGHT, WIDTH)).astype(np.uint8)
            save_png(_image_path(root, "train", city, frame), image)
            save_png(_label_path(root, "train", city, frame), label)
            # Files the converter must ignore.
            save_png(_label_path(root, "train", city, frame, "color"), image)
            save_png(_label_path(root, "train", city, frame, "instanceIds"), label)
            sources[f"{city}_{frame}"] = (image, label)
    (root / "gtFine" / "train" / "aachen" / "README.txt").write_text("not a label")
    return root, sources


def test_table_matches_the_cityscapes_list():
    np.testing.assert_array_equal(cityscapes.labelid_to_trainid_table(), ORACLE)
    ids = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(cityscapes.labelids_to_trainids(ids), ORACLE[ids])


def test_convert_maps_label_ids_and_keeps_pixels(tree, tmp_path):
    root, sources = tree
    paths = cityscapes.convert(str(tmp_path / "out"), "train", cityscapes_dir=str(root))
    assert paths == [str(tmp_path / "out" / "cityscapes_train.record")]
    rows = read_records(paths[0])
    assert len(rows) == len(sources)
    for row, stem in zip(rows, sorted(sources), strict=True):
        image, label_ids = sources[stem]
        city, frame = stem.split("_", 1)
        assert row["filename"] == str(_image_path(root, "train", city, frame))
        assert (row["format"], row["label_format"]) == ("png", "png")
        assert (row["height"], row["width"], row["channels"]) == (HEIGHT, WIDTH, 3)
        np.testing.assert_array_equal(decode(row["image"]), image)
        np.testing.assert_array_equal(decode(row["label"]), ORACLE[label_ids])
    # The training reader decodes with TF: same pixels.
    first_image, first_label = sources[sorted(sources)[0]]
    np.testing.assert_array_equal(tf.io.decode_image(rows[0]["image"], channels=3), first_image)
    decoded_label = tf.io.decode_png(rows[0]["label"], channels=1)[..., 0]
    np.testing.assert_array_equal(decoded_label, ORACLE[first_label])


def test_train_ids_file_is_preferred(tree, tmp_path):
    root, sources = tree
    train_ids = np.full((HEIGHT, WIDTH), 5, dtype=np.uint8)
    train_ids[0, :4] = 255
    save_png(_label_path(root, "train", "aachen", FRAMES["aachen"][1], "labelTrainIds"), train_ids)
    pairs = cityscapes.find_pairs(*_globbed(root))
    kinds = {pair.stem: pair.label_kind for pair in pairs}
    assert kinds[f"aachen_{FRAMES['aachen'][1]}"] == cityscapes.TRAIN_IDS
    assert list(kinds.values()).count(cityscapes.LABEL_IDS) == len(sources) - 1
    rows = read_records(cityscapes.convert(str(tmp_path / "o"), "train", str(root))[0])
    np.testing.assert_array_equal(decode(rows[1]["label"]), train_ids)


def _globbed(root, split="train"):
    image_pattern, label_pattern = cityscapes.split_patterns(str(root), split)
    return glob.glob(image_pattern), glob.glob(label_pattern)


def test_pairs_by_stem_not_by_sorted_index(tree):
    root, sources = tree
    # An extra trainIds label makes the sorted label list longer than the image list:
    # pairing by index would shift every later pair.
    save_png(
        _label_path(root, "train", "aachen", FRAMES["aachen"][0], "labelTrainIds"),
        np.zeros((HEIGHT, WIDTH), np.uint8),
    )
    images, labels = _globbed(root)
    assert len(labels) == len(images) + 1
    by_index = zip(sorted(images), sorted(labels), strict=False)
    assert any(os.path.basename(i)[:20] != os.path.basename(la)[:20] for i, la in by_index)
    stray_image = str(_label_path(root, "train", "aachen", FRAMES["aachen"][0], "color"))
    stray_label = str(_label_path(root, "train", "aachen", FRAMES["aachen"][0], "instanceIds"))
    pairs = cityscapes.find_pairs(images[::-1] + [stray_image], labels[::-1] + [stray_label])
    assert [pair.stem for pair in pairs] == sorted(sources)
    for pair in pairs:
        assert os.path.basename(pair.image_path).startswith(pair.stem + "_leftImg8bit")
        assert os.path.basename(pair.label_path).startswith(pair.stem + "_gtFine_label")


def test_missing_label_in_the_middle_names_the_expected_file(tree, tmp_path):
    root, _ = tree
    frame = FRAMES["aachen"][1]
    os.remove(_label_path(root, "train", "aachen", frame))
    with pytest.raises(DataError) as error:
        cityscapes.convert(str(tmp_path / "out"), "train", cityscapes_dir=str(root))
    message = str(error.value)
    assert str(_image_path(root, "train", "aachen", frame)) in message
    assert str(_label_path(root, "train", "aachen", frame, "labelTrainIds")) in message
    assert not (tmp_path / "out" / "cityscapes_train.record").exists()


def test_label_without_image_is_an_error(tree, tmp_path):
    root, _ = tree
    frame = FRAMES["bochum"][0]
    os.remove(_image_path(root, "train", "bochum", frame))
    with pytest.raises(DataError, match="no image") as error:
        cityscapes.convert(str(tmp_path / "out"), "train", cityscapes_dir=str(root))
    assert str(_label_path(root, "train", "bochum", frame)) in str(error.value)


def test_size_mismatch_names_both_files_and_sizes(tree, tmp_path):
    root, _ = tree
    frame = FRAMES["aachen"][2]
    label_path = save_png(
        _label_path(root, "train", "aachen", frame), np.zeros((HEIGHT, WIDTH - 4), np.uint8)
    )
    with pytest.raises(DataError) as error:
        cityscapes.convert(str(tmp_path / "out"), "train", cityscapes_dir=str(root))
    message = str(error.value)
    assert label_path in message and str(_image_path(root, "train", "aachen", frame)) in message
    assert f"{WIDTH}x{HEIGHT}" in message and f"{WIDTH - 4}x{HEIGHT}" in message
    assert not os.listdir(tmp_path / "out")  # nothing half-written


def test_train_ids_file_with_label_ids_values_is_rejected(tree, tmp_path):
    root, _ = tree
    save_png(
        _label_path(root, "train", "bochum", FRAMES["bochum"][0], "labelTrainIds"),
        np.full((HEIGHT, WIDTH), 26, np.uint8),
    )
    with pytest.raises(DataError, match="not train ids"):
        cityscapes.convert(str(tmp_path / "out"), "train", cityscapes_dir=str(root))


def test_empty_split_says_what_was_globbed(tree, tmp_path):
    root, _ = tree
    with pytest.raises(FileNotFoundError) as error:
        cityscapes.convert(str(tmp_path / "out"), "val", cityscapes_dir=str(root))
    assert os.path.join("leftImg8bit", "val", "*", "*_leftImg8bit.png") in str(error.value)


def test_patterns_and_shards(tree, tmp_path):
    root, sources = tree
    paths = cityscapes.convert(
        str(tmp_path / "out"),
        "val",
        input_pattern=str(root / "leftImg8bit" / "train" / "*" / "*.png"),
        annot_pattern=str(root / "gtFine" / "train" / "*" / "*_labelIds.png"),
        num_shards=2,
    )
    assert [os.path.basename(p) for p in paths] == [
        "cityscapes_val.record-00000-of-00002",
        "cityscapes_val.record-00001-of-00002",
    ]
    assert sum(len(read_records(p)) for p in paths) == len(sources)
    with pytest.raises(ValueError, match="either"):
        cityscapes.convert(str(tmp_path), "val", str(root), input_pattern="x", annot_pattern="y")


def test_script_runs_from_the_repository_root(tree, tmp_path):
    root, sources = tree
    result = subprocess.run(
        [
            sys.executable,
            "dataset_tools/create_cityscapes_tfrecord.py",
            f"--cityscapes_dir={root}",
            "--split_type=train",
            f"--output_dir={tmp_path / 'cli'}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{len(sources)}/{len(sources)} images" in result.stderr
    assert len(read_records(str(tmp_path / "cli" / "cityscapes_train.record"))) == len(sources)
