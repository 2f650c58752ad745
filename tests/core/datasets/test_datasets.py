"""Dataset metadata, the dataset registry and label-map files."""

import json

import numpy as np
import pytest

from core.datasets import (
    DATASETS,
    DatasetMetadata,
    LabelMapError,
    default_metadata,
    generic_metadata,
    generic_palette,
    get_dataset,
    load_label_map,
    parse_label_map,
)
from core.datasets.label_map import format_label_map
from core.registry import UnknownNameError

# cityscapesScripts helpers/labels.py, copied by hand: (trainId, name, labelId, colour).
_CITYSCAPES_ROWS = [
    (0, "road", 7, (128, 64, 128)),
    (6, "traffic light", 19, (250, 170, 30)),
    (13, "car", 26, (0, 0, 142)),
    (18, "bicycle", 33, (119, 11, 32)),
]


def test_cityscapes_is_registered_with_the_official_values():
    cityscapes = get_dataset("cityscapes")
    assert "cityscapes" in DATASETS.names()
    assert cityscapes.num_classes == 19 and cityscapes.ignore_label == 255
    for train_id, name, label_id, colour in _CITYSCAPES_ROWS:
        assert cityscapes.class_names[train_id] == name
        assert cityscapes.label_ids[train_id] == label_id
        assert cityscapes.palette[train_id] == colour
        assert tuple(cityscapes.palette_lut()[train_id]) == colour
        assert cityscapes.label_id_lut()[train_id] == label_id
    assert tuple(cityscapes.palette_lut()[255]) == (0, 0, 0)  # ignore: black
    assert cityscapes.label_id_lut()[255] == 255


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as info:
        get_dataset("cityscape")
    assert str(info.value) == (
        "unknown dataset 'cityscape'; known datasets: cityscapes. Did you mean 'cityscapes'?"
    )


def test_registering_a_dataset_in_code():
    toy = DatasetMetadata("toy_streets", ("road", "car"), ((1, 2, 3), (4, 5, 6)))
    DATASETS.register("toy_streets", toy)
    try:
        assert get_dataset("toy_streets") is toy
        with pytest.raises(ValueError, match="already registered"):
            DATASETS.register("toy_streets", generic_metadata(2))
    finally:
        DATASETS.unregister("toy_streets")


def test_default_rule_uses_cityscapes_only_for_its_class_count():
    assert default_metadata(19) is get_dataset("cityscapes")
    generic = default_metadata(5)
    assert generic.class_names == ("class_0", "class_1", "class_2", "class_3", "class_4")
    assert generic.label_ids is None and generic.label_id_lut() is None


def test_generic_palette_is_fixed_distinct_and_never_black():
    palette = generic_palette(255)
    assert len(set(palette)) == 255 and (0, 0, 0) not in palette
    assert generic_palette(3) == palette[:3] == ((128, 0, 0), (0, 128, 0), (128, 128, 0))
    with pytest.raises(ValueError, match="1..255"):
        generic_palette(0)


def test_metadata_rejects_inconsistent_values():
    with pytest.raises(ValueError, match="2 palette colours for 3 classes"):
        DatasetMetadata("d", ("a", "b", "c"), ((0, 0, 0), (1, 1, 1)))
    with pytest.raises(ValueError, match=r"colour of class 0 \('a'\)"):
        DatasetMetadata("d", ("a",), ((0, 0, 300),))
    with pytest.raises(ValueError, match="1 label ids for 2 classes"):
        DatasetMetadata("d", ("a", "b"), ((0, 0, 0), (1, 1, 1)), label_ids=(3,))


def test_text_label_map_with_names_colours_and_label_ids(tmp_path):
    path = tmp_path / "streets.txt"
    path.write_text(
        "# raw class name colour\n"
        "10 0 sky 70,130,180\n"
        "20: 1 road #804080   # a comment after a hex colour\n"
        "30 -> 2 traffic sign 220, 220, 0\n"
        "35 2\n"
        "0 255\n"
    )
    label_map = load_label_map(str(path))
    assert label_map.mapping == {10: 0, 20: 1, 30: 2, 35: 2, 0: 255}
    metadata = label_map.to_metadata()
    assert metadata.name == "streets"
    assert metadata.class_names == ("sky", "road", "traffic sign")
    assert metadata.palette == ((70, 130, 180), (128, 64, 128), (220, 220, 0))
    assert metadata.label_ids == (10, 20, 30)


def test_old_label_maps_still_read_and_get_generic_classes(tmp_path):
    text = tmp_path / "map.txt"
    text.write_text("# raw class\n0 0\n10: 1\n20 -> 2\n")
    assert load_label_map(str(text)).mapping == {0: 0, 10: 1, 20: 2}
    flat = tmp_path / "map.json"
    flat.write_text(json.dumps({"0": 0, "10": 1}))
    label_map = load_label_map(str(flat))
    assert label_map.mapping == {0: 0, 10: 1}
    assert label_map.to_metadata() == generic_metadata(2, name="map")


def test_label_map_round_trips(tmp_path):
    cityscapes = get_dataset("cityscapes")
    assert parse_label_map(format_label_map(cityscapes)).to_metadata("cityscapes") == cityscapes
    custom = DatasetMetadata("mine", ("a b", "c"), ((1, 2, 3), (250, 0, 9)))
    back = parse_label_map(format_label_map(custom), "x").to_metadata("mine")
    assert back == custom and back.label_ids is None
    rich = {
        "name": "fields",
        "classes": [
            {"name": "soil", "color": [120, 80, 40], "label_id": 3},
            {"name": "crop", "colour": "#00ff00", "label_id": 7},
        ],
    }
    path = tmp_path / "fields.json"
    path.write_text(json.dumps(rich))
    label_map = load_label_map(str(path))
    assert label_map.mapping == {3: 0, 7: 1}
    assert label_map.to_metadata() == DatasetMetadata(
        "fields", ("soil", "crop"), ((120, 80, 40), (0, 255, 0)), label_ids=(3, 7)
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("0 0 a\n1 0 b\n", r"line 2: class 0 is described twice \(also on line 1\)"),
        ("0 0\n0 1\n", "line 2: raw value 0 is mapped twice"),
        ("0 0\n3 300\n", r"line 2: 3 -> 300; both must be in 0..255"),
        ("0 255 void\n", "line 1: class 255 is the ignore label"),
        ("0 0 a 1,2,300\n", "line 1: colour '1,2,300' is not three integers"),
        ("zero 0\n", "line 1: expected 'raw_value class_id"),
        ("# nothing\n", "the label map is empty"),
        ("5 0 a\n6 1\n", r"classes \[1\] are not described"),
        ('{"classes": [{"name": "a", "colour": [1, 2]}]}', r"classes\[0\]: colour \[1, 2\]"),
        ('{"classes": [{"nmae": "a"}]}', r"classes\[0\]: expected an object with keys"),
        ('{"classes": [], "extra": 1}', r"unknown keys \['extra'\]"),
        ('{"0": 0,', "not valid JSON"),
    ],
)
def test_bad_label_maps_name_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(LabelMapError, match=message) as info:
        load_label_map(str(path)).to_metadata()
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_label_map_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_label_map(str(tmp_path / "nope.txt"))


def test_palette_lut_matches_the_palette():
    metadata = DatasetMetadata("d", ("a", "b"), ((9, 8, 7), (6, 5, 4)))
    labels = np.array([[0, 1], [255, 1]])
    expected = np.array([[[9, 8, 7], [6, 5, 4]], [[0, 0, 0], [6, 5, 4]]], np.uint8)
    np.testing.assert_array_equal(metadata.palette_lut()[labels], expected)
