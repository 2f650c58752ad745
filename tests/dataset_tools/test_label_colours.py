"""Colour-coded label PNGs: ids -> colours -> records -> ids, palettes, unknown colours."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.datasets import load_label_map
from dataset_tools import create_tfrecord_from_folders as folders
from dataset_tools import label_colours
from dataset_tools.tfrecord_utils import DataError
from tests.dataset_tools.helpers import decode, read_records, save_png

HEIGHT, WIDTH = 8, 12
# Written by hand, not taken from the code under test.
LABEL_MAP = (
    "# raw class name colour\n10 0 grass 0,200,0\n20 1 sand #E6C83C\n30 2 deep water 20,60,220\n"
)
COLOURS = {0: (0, 200, 0), 1: (230, 200, 60), 2: (20, 60, 220), 255: (0, 0, 0)}
# cityscapesScripts helpers/labels.py: road, sky, car; parking is not evaluated (trainId 255).
CITYSCAPES = {0: (128, 64, 128), 10: (70, 130, 180), 13: (0, 0, 142)}
PARKING = (250, 170, 160)


def _colour_image(ids: np.ndarray, colours: dict[int, tuple[int, int, int]]) -> np.ndarray:
    rgb = np.zeros((*ids.shape, 3), np.uint8)
    for class_id, colour in colours.items():
        rgb[ids == class_id] = colour
    return rgb


def _folders(tmp_path, labels: dict[str, np.ndarray], mode: str = "RGB"):
    rng = np.random.default_rng(0)
    image_dir, label_dir = tmp_path / "images", tmp_path / "labels"
    for name, rgb in labels.items():
        save_png(image_dir / f"{name}.png", rng.integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8))
        label_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).convert(mode).save(label_dir / f"{name}.png")
    return str(image_dir), str(label_dir)


def test_label_map_colours_round_trip_and_metadata_file(tmp_path):
    rng = np.random.default_rng(1)
    ids = {name: rng.choice([0, 1, 2, 255], (HEIGHT, WIDTH)).astype(np.uint8) for name in "ab"}
    labels = {name: _colour_image(value, COLOURS) for name, value in ids.items()}
    image_dir, label_dir = _folders(tmp_path, labels, mode="RGBA")  # alpha is dropped
    (tmp_path / "terrain.txt").write_text(LABEL_MAP)
    output = str(tmp_path / "out" / "terrain_train.record")
    paths = folders.convert_folders(
        image_dir, label_dir, output, label_map_path=str(tmp_path / "terrain.txt"), num_classes=4
    )
    described = str(tmp_path / "out" / "terrain_train.label_map.txt")
    assert paths == [output, described]
    rows = read_records(output)
    for row, name in zip(rows, "ab", strict=True):
        np.testing.assert_array_equal(decode(row["label"]), ids[name])
    metadata = load_label_map(described).to_metadata()
    assert metadata.class_names == ("grass", "sand", "deep water", "class_3")  # padded to 4
    assert metadata.palette[:3] == ((0, 200, 0), (230, 200, 60), (20, 60, 220))
    assert metadata.label_ids == (10, 20, 30, 3)


def test_cityscapes_palette_maps_its_ignored_classes_to_255(tmp_path):
    ids = np.array([[0, 10, 13, 255] * 3] * HEIGHT, np.uint8)
    rgb = _colour_image(ids, CITYSCAPES)
    rgb[0, 3] = PARKING
    image_dir, label_dir = _folders(tmp_path, {"x": rgb})
    output = str(tmp_path / "city.record")
    folders.convert_folders(image_dir, label_dir, output, label_palette="cityscapes")
    np.testing.assert_array_equal(decode(read_records(output)[0]["label"]), ids)
    metadata = load_label_map(str(tmp_path / "city.label_map.txt")).to_metadata()
    assert metadata.class_names[13] == "car" and metadata.palette[13] == (0, 0, 142)
    assert metadata.label_ids[13] == 26  # official label id of car


def test_unknown_colour_names_file_colour_and_pixel(tmp_path):
    ids = np.zeros((HEIGHT, WIDTH), np.uint8)
    rgb = _colour_image(ids, COLOURS)
    rgb[5, 7] = (1, 2, 3)
    rgb[6, 1] = (1, 2, 3)
    image_dir, label_dir = _folders(tmp_path, {"a": rgb})
    (tmp_path / "terrain.txt").write_text(LABEL_MAP)
    output = tmp_path / "out" / "t.record"
    with pytest.raises(DataError) as error:
        folders.convert_folders(
            image_dir, label_dir, str(output), label_palette=str(tmp_path / "terrain.txt")
        )
    message = str(error.value)
    assert message.startswith(f"{label_dir}/a.png: pixel (x=7, y=5) has colour (1, 2, 3)")
    assert "#010203" in message and "2 such pixels" in message and "--unmapped_label" in message
    assert not output.parent.exists() or not list(output.parent.iterdir())
    folders.convert_folders(
        image_dir,
        label_dir,
        str(output),
        label_palette=str(tmp_path / "terrain.txt"),
        unmapped="ignore",
    )
    expected = ids.copy()
    expected[5, 7] = expected[6, 1] = 255
    np.testing.assert_array_equal(decode(read_records(str(output))[0]["label"]), expected)


def test_colours_to_ids_against_a_lookup(tmp_path):
    (tmp_path / "p.txt").write_text(LABEL_MAP)
    palette = label_colours.load_palette(str(tmp_path / "p.txt"))
    rgb = np.array([[[0, 200, 0], [20, 60, 220], [0, 0, 0], [230, 200, 60]]], np.uint8)
    ids = label_colours.colours_to_ids(rgb, palette, "x.png")
    np.testing.assert_array_equal(ids, [[0, 2, 255, 1]])


def test_palette_mistakes_are_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="'nosuch' is neither a known dataset .*cityscapes"):
        label_colours.load_palette("nosuch")
    (tmp_path / "flat.txt").write_text("0 0\n1 1\n")
    with pytest.raises(DataError, match="gives no class a colour"):
        label_colours.load_palette(str(tmp_path / "flat.txt"))
    (tmp_path / "twice.txt").write_text("0 0 a 1,2,3\n1 1 b #010203\n")
    with pytest.raises(DataError, match="classes 0 and 1 have the same colour"):
        label_colours.load_palette(str(tmp_path / "twice.txt"))
    with pytest.raises(DataError, match="19 classes but --num_classes=5"):
        label_colours.palette_and_metadata("cityscapes", None, 5)


def test_colour_label_without_palette_names_the_flag(tmp_path):
    image_dir, label_dir = _folders(tmp_path, {"a": np.zeros((HEIGHT, WIDTH, 3), np.uint8)})
    with pytest.raises(DataError, match="a.png: label image is colour-coded.*--label_palette"):
        folders.convert_folders(image_dir, label_dir, str(tmp_path / "o.record"))


def test_metadata_path():
    assert label_colours.metadata_path("d/x_train.record") == "d/x_train.label_map.txt"
    assert label_colours.metadata_path("d/x.tfrecord") == "d/x.label_map.txt"
    assert label_colours.metadata_path("d/x") == "d/x.label_map.txt"
