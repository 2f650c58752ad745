"""compress.py end to end: a tiny ICNet checkpoint -> pruned checkpoint + config that rebuilds it.

The script runs in a subprocess (absl flags are process-global).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import tensorflow as tf

from builders import config_util, model_builder
from core import checkpoint_utils

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _compress(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "compress.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_compress_writes_a_checkpoint_that_its_config_restores(tiny_config_path, tmp_path):
    model = model_builder.build(config_util.load_pipeline_config(tiny_config_path).model)
    model.build_variables()
    prefix = str(tmp_path / "train" / "model.ckpt-3")
    checkpoint_utils.make_checkpoint(model).write(prefix)
    output_dir = tmp_path / "pruned"

    run = _compress(
        f"--config_path={tiny_config_path}",
        f"--input_checkpoint={prefix}",
        f"--output_dir={output_dir}",
        "--compression_factor=0.5",
        "--flops_input_size=97,97",
        "--interactive",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((output_dir / "compression_summary.json").read_text())
    assert summary["filter_scale"] == 0.0625  # 0.125 x 0.5: uniform, so no layer_widths
    assert summary["layer_widths"] == {}
    assert summary["params_after"] < summary["params_before"]
    assert summary["gflops_after"] < summary["gflops_before"]
    assert summary["plots"] and all(os.path.exists(p) for p in summary["plots"])

    config = config_util.load_pipeline_config(str(output_dir / "pipeline.config"))
    pruned = model_builder.build(config.model)
    checkpoint_utils.restore_model(pruned, str(output_dir))  # via the 'checkpoint' state file
    assert pruned.count_parameters() == summary["params_after"]
    logits = pruned(tf.zeros([1, 97, 97, 3]), training=False)["logits"]
    assert logits.shape == (1, 97, 97, 19)


def test_compress_names_an_unknown_skipped_node(tiny_config_path, tmp_path):
    model = model_builder.build(config_util.load_pipeline_config(tiny_config_path).model)
    model.build_variables()
    prefix = str(tmp_path / "model.ckpt-1")
    checkpoint_utils.make_checkpoint(model).write(prefix)
    run = _compress(
        f"--config_path={tiny_config_path}",
        f"--input_checkpoint={prefix}",
        f"--output_dir={tmp_path / 'out'}",
        "--skippable_nodes=NoSuch/Conv2D",
        "--flops_input_size=",
    )
    assert run.returncode != 0
    assert "NoSuch" in run.stderr
