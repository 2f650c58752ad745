"""Tests of config loading: parse errors, validation, overrides and saving."""

from __future__ import annotations

import glob
import os

import pytest
from google.protobuf import text_format

from builders import config_util
from builders.config_util import ConfigError
from protos import pipeline_pb2

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.config")))
TEMPLATE = os.path.join(REPO, "configs", "sample_icnet_resnet_v1.config")

MINIMAL = """\
model {
  icnet {
    num_classes: 19
    filter_scale: 0.5
    pooling_factors: 1
    pooling_factors: 2
    feature_extractor { type: "dilated_resnet50" }
  }
}
train_config {
  batch_size: 4
  optimizer {
    momentum_optimizer {
      learning_rate { constant_learning_rate { learning_rate: 0.01 } }
    }
  }
  preprocessor_step { random_image_scale { min_scale_ratio: 0.5 max_scale_ratio: 2.0 } }
  preprocessor_step { random_image_crop { crop_height: 64 crop_width: 64 } }
  preprocessor_step { random_horizontal_flip {} }
}
"""


def _write(tmp_path, text, name="pipeline.config"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _error(tmp_path, text) -> str:
    with pytest.raises(ConfigError) as info:
        config_util.load_pipeline_config(_write(tmp_path, text))
    return str(info.value)


@pytest.mark.parametrize("path", [p for p in CONFIGS if p != TEMPLATE], ids=os.path.basename)
def test_every_shipped_config_parses_and_validates(path):
    config = config_util.load_pipeline_config(path)
    assert config.model.WhichOneof("model") in ("icnet", "pspnet")
    assert config.train_config.batch_size > 0
    assert config.eval_config.eval_input_type.WhichOneof("eval_input_type_oneof")


def test_shipped_configs_cover_the_original_recipes():
    names = {os.path.basename(p) for p in CONFIGS}
    for expected in (
        "pspnet_1.0_713_resnet_v1.config",
        "pspnet_1.0_713_mobilenet_v2.config",
        "single_stage_icnet_1.0_1025_resnet_v1.config",
        "single_stage_icnet_1.0_1025_mobilenet_v2.config",
        "two_stage_icnet_1.0_1025_resnet_v1_stage_1.config",
        "two_stage_icnet_0.5_1025_resnet_v1_stage_2.config",
        "sample_icnet_resnet_v1.config",
    ):
        assert expected in names
    stage_2 = config_util.load_pipeline_config(
        os.path.join(REPO, "configs", "two_stage_icnet_0.5_1025_resnet_v1_stage_2.config")
    )
    assert stage_2.model.icnet.filter_scale == pytest.approx(0.5)
    assert list(stage_2.model.icnet.pooling_factors) == [1, 2, 3, 4]


def test_template_names_every_placeholder_line_then_loads_once_filled(tmp_path):
    with open(TEMPLATE) as handle:
        text = handle.read()
    with pytest.raises(ConfigError) as info:
        config_util.load_pipeline_config(TEMPLATE)
    message = str(info.value)
    placeholder_lines = [
        number
        for number, line in enumerate(text.splitlines(), start=1)
        if "MODIFY_THIS_FIELD" in line and not line.lstrip().startswith("#")
    ]
    assert len(placeholder_lines) >= 3
    for number in placeholder_lines:
        assert f"sample_icnet_resnet_v1.config:{number}:" in message
    assert 'field "num_classes"' in message

    filled = (
        text.replace("MODIFY_THIS_FIELD_WITH_YOUR_NUM_CLASSES", "5")
        .replace("MODIFY_THIS_FIELD_WITH_YOUR_NUM_TRAIN_EXAMPLES", "100")
        .replace("MODIFY_THIS_FIELD_WITH_YOUR_NUM_EVAL_EXAMPLES", "10")
        .replace("MODIFY_THIS_FIELD_WITH_YOUR_CHECKPOINT", "/data/model.ckpt")
        .replace("MODIFY_THIS_FIELD_WITH_YOUR_TRAIN_RECORD", "/data/train.record")
        .replace("MODIFY_THIS_FIELD_WITH_YOUR_EVAL_RECORD", "/data/val.record")
    )
    config = config_util.load_pipeline_config(_write(tmp_path, filled))
    assert config.model.icnet.num_classes == 5


def test_unknown_field_names_file_line_column_and_suggests(tmp_path):
    text = MINIMAL.replace("    num_classes: 19", "    num_clases: 19")
    message = _error(tmp_path, text)
    assert "pipeline.config:3:5:" in message
    assert 'unknown field "num_clases" in ICNet' in message
    assert 'Did you mean "num_classes"?' in message


def test_wrong_value_type_names_the_line(tmp_path):
    text = MINIMAL.replace("filter_scale: 0.5", 'filter_scale: "half"')
    message = _error(tmp_path, text)
    assert "pipeline.config:4:" in message
    assert "Couldn't parse float" in message


def test_original_invalid_quirk_is_a_parse_error(tmp_path):
    # The original sample config had `num_examples: fine_tune_checkpoint`.
    text = MINIMAL + "train_input_reader {\n  num_examples: fine_tune_checkpoint\n}\n"
    message = _error(tmp_path, text)
    assert "pipeline.config:22:17:" in message


def test_missing_required_values_are_all_reported_with_lines(tmp_path):
    text = MINIMAL.replace("    num_classes: 19\n", "").replace("    filter_scale: 0.5\n", "")
    message = _error(tmp_path, text)
    assert "2 invalid values" in message
    # Missing fields point at their enclosing message (icnet starts on line 2).
    assert "pipeline.config:2: model.icnet.num_classes: is required" in message
    assert "pipeline.config:2: model.icnet.filter_scale: is required" in message


@pytest.mark.parametrize(
    "old, new, line, field",
    [
        ("filter_scale: 0.5", "filter_scale: 1.5", 4, "model.icnet.filter_scale"),
        ("filter_scale: 0.5", "filter_scale: 0.0", 4, "model.icnet.filter_scale"),
        ("pooling_factors: 2", "pooling_factors: -2", 6, "model.icnet.pooling_factors[1]"),
        ("crop_height: 64", "crop_height: 0", 18, "random_image_crop.crop_height"),
        ("min_scale_ratio: 0.5", "min_scale_ratio: 3.0", 17, "random_image_scale"),
        ("batch_size: 4", "batch_size: 0", 11, "train_config.batch_size"),
        ('type: "dilated_resnet50"', 'type: "dialted_mobilenet"', 7, "feature_extractor.type"),
    ],
)
def test_out_of_range_values_name_line_and_field(tmp_path, old, new, line, field):
    assert old in MINIMAL
    message = _error(tmp_path, MINIMAL.replace(old, new))
    assert f"pipeline.config:{line}: " in message
    assert field in message


def test_misspelled_extractor_gets_a_suggestion(tmp_path):
    # The original's MobileNet ICNet config spelled the type "dialted_mobilenet".
    message = _error(tmp_path, MINIMAL.replace("dilated_resnet50", "dialted_mobilenet"))
    assert 'Did you mean "dilated_mobilenet"?' in message


def test_checkpoint_and_type_must_come_together(tmp_path):
    text = MINIMAL.replace(
        "batch_size: 4", 'batch_size: 4\n  fine_tune_checkpoint_type: "classification"'
    )
    message = _error(tmp_path, text)
    assert "train_config.fine_tune_checkpoint: is empty" in message


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.config.*--config_path"):
        config_util.load_pipeline_config(str(tmp_path / "nope.config"))


def test_override_replaces_repeated_fields_instead_of_appending(tmp_path):
    path = _write(tmp_path, MINIMAL)
    config = config_util.load_pipeline_config(
        path,
        config_override=[
            "train_config { preprocessor_step { random_horizontal_flip {} } batch_size: 2 }",
            "model { icnet { pooling_factors: 1 pooling_factors: 3 pooling_factors: 6 } }",
        ],
    )
    steps = config.train_config.preprocessor_step
    assert [s.WhichOneof("preprocessing_step") for s in steps] == ["random_horizontal_flip"]
    assert config.train_config.batch_size == 2
    assert list(config.model.icnet.pooling_factors) == [1, 3, 6]
    # Untouched fields survive the merge.
    assert config.model.icnet.num_classes == 19
    assert config.train_config.optimizer.WhichOneof("optimizer") == "momentum_optimizer"


def test_override_switches_a_oneof_and_is_validated(tmp_path):
    path = _write(tmp_path, MINIMAL)
    config = config_util.load_pipeline_config(
        path,
        config_override="model { pspnet { num_classes: 3 filter_scale: 1.0 "
        'feature_extractor { type: "dilated_resnet50" } } }',
    )
    assert config.model.WhichOneof("model") == "pspnet"
    assert config.model.pspnet.num_classes == 3
    with pytest.raises(ConfigError, match="model.icnet.filter_scale: must be in"):
        config_util.load_pipeline_config(
            path, config_override="model { icnet { filter_scale: 2 } }"
        )
    with pytest.raises(ConfigError, match="--config_override #1:1:"):
        config_util.load_pipeline_config(path, config_override="model { icnet { bogus: 1 } }")


def test_written_config_round_trips_atomically(tmp_path):
    config = config_util.load_pipeline_config(_write(tmp_path, MINIMAL))
    out_dir = tmp_path / "train"
    written = config_util.write_pipeline_config(config, str(out_dir))
    assert os.path.basename(written) == "pipeline.config"
    assert os.listdir(out_dir) == ["pipeline.config"]  # no temporary file left behind
    reread = text_format.Parse(open(written).read(), pipeline_pb2.PipelineConfig())
    assert reread == config


def test_locate_fields_handles_several_fields_on_one_line():
    text = 'a {\n  b { c: 1 d: "x { y" }\n  b { c: 2 }\n}\n# e: 3\ne: 4\n'
    locations = config_util.locate_fields(text)
    assert locations["a[0]"] == 1
    assert locations["a[0].b[0].c[0]"] == 2
    assert locations["a[0].b[0].d[0]"] == 2
    assert locations["a[0].b[1].c[0]"] == 3
    assert locations["e[0]"] == 6


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(REPO, "configs", "compression", "*.prune_config")))
)
def test_prune_configs_parse(path):
    config = config_util.load_prune_config(path)
    pruner = config.compression_strategy.filter_pruner
    assert pruner.node_scope == "SharedFeatureExtractor/resnet_v1_50"
    assert len(pruner.node) >= 16
    # Every conv3 of a block takes its mask from that block's unit_1 shortcut.
    for spec in pruner.node:
        if spec.target.name.endswith("conv3/Conv2D"):
            block = spec.target.name.split("/")[0]
            assert spec.source.name == f"{block}/unit_1/bottleneck_v1/shortcut/Conv2D"


def test_prune_config_errors_name_the_line(tmp_path):
    path = _write(
        tmp_path,
        "compression_strategy {\n  filter_pruner {\n    nodes {}\n  }\n}\n",
        "x.prune_config",
    )
    with pytest.raises(ConfigError, match=r'x.prune_config:3:5: unknown field "nodes".*"node"'):
        config_util.load_prune_config(path)
    with pytest.raises(ConfigError, match="prune config not found"):
        config_util.load_prune_config(str(tmp_path / "missing.prune_config"))
