"""The config's dataset field -> metadata, its default rule and its one-line errors."""

import pytest
from absl import logging

from builders import config_util, dataset_metadata_builder
from builders.config_util import ConfigError
from tests.conftest import TINY_CONFIG

BASE = TINY_CONFIG.format(train="train.record", val="val.record")


def _config(extra="", classes=19):
    text = BASE.replace("num_classes: 19", f"num_classes: {classes}") + extra
    return config_util.parse_pipeline_text(text)


def test_absent_field_keeps_the_original_behaviour(monkeypatch):
    messages = []
    monkeypatch.setattr(logging, "info", lambda fmt, *args: messages.append(fmt % args))
    assert dataset_metadata_builder.build(_config()).name == "cityscapes"
    generic = dataset_metadata_builder.build(_config(classes=3))
    assert generic.class_names == ("class_0", "class_1", "class_2")
    assert len(messages) == 2 and all("dataset { name:" in m for m in messages)


def test_named_and_label_map_datasets(tmp_path):
    assert (
        dataset_metadata_builder.build(_config('dataset { name: "cityscapes" }')).num_classes == 19
    )
    path = tmp_path / "three.txt"
    path.write_text("1 0 grass 0,200,0\n2 1 sand 200,200,0\n3 2 water 0,0,200\n")
    metadata = dataset_metadata_builder.build(
        _config(f'dataset {{ label_map_path: "{path}" }}', classes=3)
    )
    assert metadata.class_names == ("grass", "sand", "water")
    assert metadata.label_ids == (1, 2, 3)


def test_errors_are_one_line_and_name_the_field(tmp_path):
    with pytest.raises(ConfigError) as info:
        dataset_metadata_builder.build(_config('dataset { name: "kitti" }'))
    assert str(info.value) == ("dataset.name: unknown dataset 'kitti'; known datasets: cityscapes.")
    path = tmp_path / "two.txt"
    path.write_text("0 0 a\n1 1 b\n")
    with pytest.raises(ConfigError) as info:
        dataset_metadata_builder.build(_config(f'dataset {{ label_map_path: "{path}" }}'))
    assert str(info.value) == (
        "dataset.label_map_path: dataset 'two' has 2 classes but model.icnet.num_classes is "
        "19; make them agree."
    )
    with pytest.raises(ConfigError, match="label_map_path: label map .*missing.txt' does not"):
        dataset_metadata_builder.build(_config('dataset { label_map_path: "missing.txt" }'))


def test_loading_a_config_validates_the_dataset(tmp_path):
    config_path = tmp_path / "bad.config"
    config_path.write_text(BASE + 'dataset { name: "cityscape" }\n')
    with pytest.raises(
        ConfigError,
        match=r"dataset.name: unknown dataset 'cityscape'.*"
        r"Did you mean 'cityscapes'\?",
    ):
        config_util.load_pipeline_config(str(config_path))


def test_build_for_model_finds_the_exported_config(tmp_path):
    config_util.write_pipeline_config(_config(), str(tmp_path))
    model_path = str(tmp_path / "frozen_inference_graph.pb")
    assert dataset_metadata_builder.build_for_model(model_path=model_path).name == "cityscapes"
    assert dataset_metadata_builder.build_for_model(model_path=str(tmp_path / "x" / "m.pb")) is None
