"""Config knowledge in one place: each rule is written and reported once, with file:line.

The expected messages are written out by hand from the config texts below (line numbers
counted in the text), not taken from the code under test.
"""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from builders import (
    config_util,
    config_validation,
    model_builder,
    optimizer_builder,
    preprocessor_builder,
)
from builders.config_util import ConfigError
from protos import pipeline_pb2, train_pb2
from tests.builders.test_config_util import MINIMAL

NO_MODEL = """\
train_config {
  batch_size: 4
  optimizer {
    momentum_optimizer {
      learning_rate { constant_learning_rate { learning_rate: 0.01 } }
    }
  }
}
"""


def _load_error(tmp_path, text: str) -> tuple[str, list[str]]:
    path = tmp_path / "pipeline.config"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config_util.load_pipeline_config(str(path))
    header, *problems = str(info.value).split("\n")
    return str(path), [header, *(line.strip() for line in problems)]


def test_a_bad_preprocessing_value_is_exactly_one_problem_line_with_file_and_line(tmp_path):
    # MINIMAL's random_image_crop step is on line 18.
    path, lines = _load_error(tmp_path, MINIMAL.replace("crop_height: 64", "crop_height: 0"))
    assert lines == [
        f"{path}: 1 invalid value:",
        f"{path}:18: train_config.preprocessor_step[1].random_image_crop.crop_height: "
        "must be > 0, got 0.",
    ]


def test_every_preprocessing_rule_is_reported_once_per_problem(tmp_path):
    steps = (
        "  preprocessor_step { random_image_scale { min_scale_ratio: 3.0 max_scale_ratio: 2.0 } }\n"
        "  preprocessor_step { random_image_crop { crop_height: 64 images_channel_dim: 1 } }\n"
        "  preprocessor_step { }\n"
        "  preprocessor_step { aspect_ratio_image_resize { min_dimension: -1 } }\n"
    )
    text = MINIMAL.replace(
        "  preprocessor_step { random_image_scale { min_scale_ratio: 0.5 max_scale_ratio: 2.0 } }\n"
        "  preprocessor_step { random_image_crop { crop_height: 64 crop_width: 64 } }\n",
        steps,
    )
    assert text != MINIMAL
    path, lines = _load_error(tmp_path, text)
    prefix = "train_config.preprocessor_step"
    assert lines == [
        f"{path}: 5 invalid values:",
        f"{path}:17: {prefix}[0].random_image_scale: "
        "min_scale_ratio (3.0) must be <= max_scale_ratio (2.0).",
        f"{path}:18: {prefix}[1].random_image_crop.crop_width: "
        "is not set; it is required (a positive value).",
        f"{path}:18: {prefix}[1].random_image_crop.images_channel_dim: "
        "must be 3 (RGB images), got 1.",
        f"{path}:19: {prefix}[2]: sets no step; set exactly one of: set_fixed_image_size, "
        "aspect_ratio_image_resize, random_image_scale, random_image_crop, "
        "random_horizontal_flip.",
        f"{path}:20: {prefix}[3].aspect_ratio_image_resize.min_dimension: must be > 0, got -1.",
    ]


def test_the_builder_runs_the_validation_rules_rather_than_its_own(monkeypatch):
    steps = text_format.Parse(
        "preprocessor_step { random_horizontal_flip {} }", train_pb2.TrainConfig()
    ).preprocessor_step
    assert len(preprocessor_builder.build(steps).step_names) == 1
    # Whatever the single rule list says is what the builder reports.
    monkeypatch.setattr(
        config_validation,
        "preprocessing_step_problems",
        lambda step: [("random_horizontal_flip", "is forbidden today.")],
    )
    with pytest.raises(preprocessor_builder.PreprocessorConfigError) as info:
        preprocessor_builder.build(steps)
    assert str(info.value) == "preprocessor_step[0].random_horizontal_flip is forbidden today."
    assert isinstance(info.value, ConfigError)


def test_a_config_without_a_model_is_one_clear_error(tmp_path):
    path, lines = _load_error(tmp_path, NO_MODEL)
    assert lines == [
        f"{path}: 1 invalid value:",
        f"{path}: model: is required: add model {{ icnet {{ ... }} }} or "
        "model { pspnet { ... } }.",
    ]


def test_model_config_is_the_one_accessor_and_rejects_no_model():
    config = text_format.Parse(MINIMAL, pipeline_pb2.PipelineConfig())
    kind, message = model_builder.model_config(config)
    assert kind == "icnet" and message.num_classes == 19 and message.filter_scale == 0.5
    assert model_builder.model_config(config.model) == ("icnet", config.model.icnet)
    empty = text_format.Parse(NO_MODEL, pipeline_pb2.PipelineConfig())
    with pytest.raises(ValueError, match="the config has no model: add model"):
        model_builder.model_config(empty)


# Each optimizer/learning-rate rule, broken alone in MINIMAL's optimizer block (lines 12-16:
# "optimizer {", "momentum_optimizer {", the learning_rate line, "}", "}").
_MOMENTUM = "    momentum_optimizer {\n"
_RATE = "      learning_rate { constant_learning_rate { learning_rate: 0.01 } }\n"
_PREFIX = "train_config.optimizer.momentum_optimizer"


def _rate(schedule: str) -> tuple[str, str]:
    return _RATE, f"      learning_rate {{ {schedule} }}\n"


@pytest.mark.parametrize(
    "old, new, line, field, reason",
    [
        (
            *_rate("constant_learning_rate { learning_rate: 0 }"),
            14,
            f"{_PREFIX}.learning_rate.constant_learning_rate.learning_rate",
            "must be positive, got 0.",
        ),
        (  # The old validation let a NaN rate through (NaN <= 0 is false).
            *_rate("constant_learning_rate { learning_rate: nan }"),
            14,
            f"{_PREFIX}.learning_rate.constant_learning_rate.learning_rate",
            "must be positive, got nan.",
        ),
        (
            *_rate("exponential_decay_learning_rate { initial_learning_rate: -0.1 }"),
            14,
            f"{_PREFIX}.learning_rate.exponential_decay_learning_rate.initial_learning_rate",
            "must be positive, got -0.1.",
        ),
        (
            *_rate("exponential_decay_learning_rate { decay_steps: 0 }"),
            14,
            f"{_PREFIX}.learning_rate.exponential_decay_learning_rate.decay_steps",
            "must be positive, got 0.",
        ),
        (  # The old builder accepted a growing "decay".
            *_rate("exponential_decay_learning_rate { decay_factor: 1.5 }"),
            14,
            f"{_PREFIX}.learning_rate.exponential_decay_learning_rate.decay_factor",
            "must be in (0, 1] (the rate's multiplier per decay_steps), got 1.5.",
        ),
        (
            *_rate("exponential_decay_learning_rate { decay_factor: 0 }"),
            14,
            f"{_PREFIX}.learning_rate.exponential_decay_learning_rate.decay_factor",
            "must be in (0, 1] (the rate's multiplier per decay_steps), got 0.",
        ),
        (  # The old validation did not check power.
            *_rate("polynomial_decay_learning_rate { power: 0 }"),
            14,
            f"{_PREFIX}.learning_rate.polynomial_decay_learning_rate.power",
            "must be positive, got 0.",
        ),
        (
            *_rate("polynomial_decay_learning_rate { decay_steps: 0 }"),
            14,
            f"{_PREFIX}.learning_rate.polynomial_decay_learning_rate.decay_steps",
            "must be positive, got 0.",
        ),
        (
            _RATE,
            "      learning_rate { }\n",
            14,
            f"{_PREFIX}.learning_rate",
            "has no schedule; set one of: constant_learning_rate, "
            "exponential_decay_learning_rate, polynomial_decay_learning_rate.",
        ),
        (  # The old builder accepted momentum 1.
            _MOMENTUM,
            "    momentum_optimizer { momentum_optimizer_value: 1.0\n",
            13,
            f"{_PREFIX}.momentum_optimizer_value",
            "must be in [0, 1), got 1 (0.9 is usual; at 1 old gradients never fade).",
        ),
        (
            _MOMENTUM,
            "    momentum_optimizer { momentum_optimizer_value: -0.5\n",
            13,
            f"{_PREFIX}.momentum_optimizer_value",
            "must be in [0, 1), got -0.5 (0.9 is usual; at 1 old gradients never fade).",
        ),
        (
            _MOMENTUM + _RATE + "    }\n",
            "    adam_optimizer {\n      learning_rate { }\n    }\n",
            14,
            "train_config.optimizer.adam_optimizer.learning_rate",
            "has no schedule; set one of: constant_learning_rate, "
            "exponential_decay_learning_rate, polynomial_decay_learning_rate.",
        ),
        (
            "  optimizer {\n" + _MOMENTUM + _RATE + "    }\n  }\n",
            "  optimizer { }\n",
            12,
            "train_config.optimizer",
            "is required: momentum_optimizer { ... } or adam_optimizer { ... }.",
        ),
    ],
)
def test_each_optimizer_rule_is_one_problem_and_the_builders_same_reason(
    tmp_path, old, new, line, field, reason
):
    assert MINIMAL.count(old) == 1
    text = MINIMAL.replace(old, new)
    path, lines = _load_error(tmp_path, text)
    assert lines == [f"{path}: 1 invalid value:", f"{path}:{line}: {field}: {reason}"]
    # The builder, given the same message outside a loaded config, raises the same reason.
    optimizer = text_format.Parse(text, pipeline_pb2.PipelineConfig()).train_config.optimizer
    with pytest.raises(ConfigError) as info:
        optimizer_builder.build(optimizer)
    assert str(info.value) == f"{field} {reason}"


def test_several_optimizer_problems_are_each_reported_once(tmp_path):
    text = MINIMAL.replace(
        _MOMENTUM + _RATE,
        "    momentum_optimizer { momentum_optimizer_value: 1.0\n"
        "      learning_rate { polynomial_decay_learning_rate {\n"
        "        initial_learning_rate: 0 power: -1 } }\n",
    )
    assert text != MINIMAL
    path, lines = _load_error(tmp_path, text)
    schedule = f"{_PREFIX}.learning_rate.polynomial_decay_learning_rate"
    assert lines == [
        f"{path}: 3 invalid values:",
        f"{path}:15: {schedule}.initial_learning_rate: must be positive, got 0.",
        f"{path}:15: {schedule}.power: must be positive, got -1.",
        f"{path}:13: {_PREFIX}.momentum_optimizer_value: "
        "must be in [0, 1), got 1 (0.9 is usual; at 1 old gradients never fade).",
    ]
