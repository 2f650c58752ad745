"""Tests of runners.export: config + checkpoint -> every export format, with clear errors.

The export is the shared one of tests/runners/export_fixtures.py.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from builders import config_util
from core.checkpoints import checkpoint_utils
from core.deploy import exporter, tflite_export
from core.deploy.exporter import ExportError
from runners.export import export_inference_graph
from tests.runners.export_fixtures import build_model


def test_export_writes_every_file_and_a_summary(exported):
    names = sorted(os.listdir(exported.output_dir))
    assert names == sorted(
        [
            "export_summary.json",
            "frozen_inference_graph.pb",
            "labels.txt",
            "metadata.json",
            "model.ckpt.data-00000-of-00001",
            "model.ckpt.index",
            "model_float32.tflite",
            "model_int8.tflite",
            "pipeline.config",
            "saved_model",
        ]
    )  # and no staging directory left behind
    with open(os.path.join(exported.output_dir, "export_summary.json")) as stream:
        summary = json.load(stream)
    assert summary["input_shape"] == [-1, 96, 128, 3] and summary["pad_to_shape"] == [97, 129]
    assert summary["parameters"] == exported.model.count_parameters()
    assert summary["checkpoint"] == exported.checkpoint
    assert summary["files"]["model_int8.tflite"] < summary["files"]["model_float32.tflite"] / 2
    config = config_util.load_pipeline_config(os.path.join(exported.output_dir, "pipeline.config"))
    assert config.model.icnet.num_classes == 19

    # model.ckpt holds exactly the checkpoint's model variables (compress.py's input).
    restored = build_model(exported.config_path, os.path.join(exported.output_dir, "model.ckpt"))
    for name, variable in exported.model.named_variables().items():
        np.testing.assert_array_equal(restored.named_variables()[name].numpy(), variable.numpy())


def test_int8_with_mobile_ops_is_all_int8(exported, tmp_path):
    result = export_inference_graph(
        exported.config_path,
        exported.checkpoint,
        str(tmp_path),
        "96,128,3",
        "97,129",
        formats=["tflite_int8"],
        num_calibration_images=1,
        config_override="model { icnet { mobile_ops_only: true } }",
    )
    assert result.summary["int8"]["float_ops"] == []
    interpreter = tflite_export.make_interpreter(str(tmp_path / "model_int8.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    assert interpreter.get_output_details()[0]["dtype"] == np.int32


def test_bad_inputs_give_clear_errors(exported, tmp_path):
    config, checkpoint = exported.config_path, exported.checkpoint
    with pytest.raises(checkpoint_utils.CheckpointError, match="missing.ckpt.*not found"):
        export_inference_graph(config, str(tmp_path / "missing.ckpt"), str(tmp_path), "96,128,3")
    with pytest.raises(ExportError, match="height and width must be known"):
        export_inference_graph(config, checkpoint, str(tmp_path), "-1,-1,-1,3")
    with pytest.raises(ExportError, match="not a comma-separated list"):
        export_inference_graph(config, checkpoint, str(tmp_path), "96x128x3")
    with pytest.raises(ExportError, match="unknown \\['tensorrt'\\]"):
        export_inference_graph(config, checkpoint, str(tmp_path), "97,129,3", formats=["tensorrt"])
    with pytest.raises(ExportError, match="64x64 is too small.*at least 97x97"):
        exporter.build_serving_function(exported.model, (None, 64, 64, 3))
    with pytest.raises(ExportError, match="tflite_int8 needs calibration images"):
        exporter.export_model(exported.model, str(tmp_path), (None, 97, 129, 3))
    with pytest.raises(config_util.ConfigError, match="config file not found"):
        export_inference_graph(str(tmp_path / "no.config"), checkpoint, str(tmp_path), "96,128,3")
    no_eval = tmp_path / "no_eval.config"
    text = open(config).read()
    no_eval.write_text(text[: text.index("eval_config")])
    with pytest.raises(ExportError, match="no eval_input_reader.*tflite_int8 out of --formats"):
        export_inference_graph(str(no_eval), checkpoint, str(tmp_path), "96,128,3")
    assert os.listdir(tmp_path) == ["no_eval.config"]  # nothing written by failed exports
