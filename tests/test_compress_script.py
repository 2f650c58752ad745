"""compress.py end to end: a tiny ICNet checkpoint -> pruned checkpoint + config that rebuilds it.

The script runs in a subprocess (absl flags are process-global).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from builders import config_util, model_builder
from core.analysis import latency
from core.checkpoints import checkpoint_utils
from runners import compress as compression
from runners import compress_latency
from tests.core.analysis.latency_oracle import OracleTimer

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
        "--latency_input_size=97,97",
        "--latency_runs=1",
        "--interactive",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((output_dir / "compression_summary.json").read_text())
    assert summary["filter_scale"] == 0.0625  # 0.125 x 0.5: uniform, so no layer_widths
    assert summary["layer_widths"] == {}
    assert summary["params_after"] < summary["params_before"]
    assert summary["gflops_after"] < summary["gflops_before"]
    assert summary["plots"] and all(os.path.exists(p) for p in summary["plots"])
    assert summary["latency_input_size"] == [97, 97]
    assert summary["latency_before_ms"] > 0 and summary["latency_after_ms"] > 0
    assert "CPU latency" in run.stdout

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


def _checkpoint(config_path: str, prefix: str) -> None:
    model = model_builder.build(config_util.load_pipeline_config(config_path).model)
    model.build_variables()
    checkpoint_utils.make_checkpoint(model).write(prefix)


def _eval_parameters(model) -> int:
    """Parameters an eval-mode forward pass reads: every variable but the moving statistics
    and the training-only auxiliary classifiers."""
    aux = set(model.aux_scopes())
    return sum(
        int(np.prod(variable.shape))
        for name, variable in model.named_variables().items()
        if not name.endswith(("moving_mean", "moving_variance"))
        and name.rsplit("/", 1)[0] not in aux
    )


def test_latency_report_times_the_original_and_the_pruned_model_interleaved(
    tiny_config_path, tmp_path, monkeypatch
):
    prefix = str(tmp_path / "model.ckpt-1")
    _checkpoint(tiny_config_path, prefix)
    timed = []
    real_measure = latency.measure_interleaved

    def spy(fns, *, warmup, runs):
        # The variables a forward pass reads tell which model each callable runs.
        for name, fn in fns.items():
            with tf.GradientTape() as tape:
                fn()
            timed.append((name, sum(int(np.prod(v.shape)) for v in tape.watched_variables())))
        stats = real_measure(fns, warmup=warmup, runs=runs)
        timed.append(stats)
        return stats

    monkeypatch.setattr(latency, "measure_interleaved", spy)
    monkeypatch.setattr(latency, "measure", lambda *a, **k: pytest.fail("timed alone"))
    output = compression.compress(
        config_path=tiny_config_path,
        input_checkpoint=prefix,
        output_dir=str(tmp_path / "out"),
        compression_factor=0.5,
        flops_input_size=None,
        latency_input_size=(97, 97),
        latency_runs=2,
    )
    original = model_builder.build(config_util.load_pipeline_config(tiny_config_path).model)
    original.build_variables()
    pruned = model_builder.build(config_util.load_pipeline_config(output.pipeline_config).model)
    pruned.build_variables()
    assert timed[:2] == [
        ("before", _eval_parameters(original)),
        ("after", _eval_parameters(pruned)),
    ]
    stats = timed[2]
    before, after = stats["before"], stats["after"]
    assert before.runs == after.runs == 2
    summary = json.loads((tmp_path / "out" / "compression_summary.json").read_text())
    assert summary["latency_before_ms"] == before.median_ms > 0
    assert summary["latency_after_ms"] == after.median_ms > 0
    assert summary["speedup"] == before.median_ms / after.median_ms
    assert summary["latency_input_size"] == [97, 97]
    assert summary["threads"] == before.threads >= 1


def test_latency_is_skipped_with_soft_apply(tiny_config_path, tmp_path, monkeypatch):
    prefix = str(tmp_path / "model.ckpt-1")
    _checkpoint(tiny_config_path, prefix)
    monkeypatch.setattr(latency, "measure", lambda *a, **k: pytest.fail("timed a model"))
    monkeypatch.setattr(
        latency, "measure_interleaved", lambda *a, **k: pytest.fail("timed a model")
    )
    output = compression.compress(
        config_path=tiny_config_path,
        input_checkpoint=prefix,
        output_dir=str(tmp_path / "out"),
        soft_apply=True,
        flops_input_size=None,
        latency_input_size=(97, 97),
    )
    assert "latency_before_ms" not in output.summary


def test_compress_reports_a_bad_prune_config_as_an_error(tiny_config_path, tmp_path):
    prefix = str(tmp_path / "model.ckpt-1")
    _checkpoint(tiny_config_path, prefix)
    prune_config = tmp_path / "bad.prune_config"
    prune_config.write_text(
        """compression_strategy { filter_pruner {
             node_scope: "SharedFeatureExtractor/resnet_v1_50"
             node {
               target { name: "block1/unit_1/bottleneck_v1/conv1" }
               source { name: "block4/unit_1/bottleneck_v1/conv1" }
             } } }"""
    )
    run = _compress(
        f"--config_path={tiny_config_path}",
        f"--input_checkpoint={prefix}",
        f"--output_dir={tmp_path / 'out'}",
        f"--prune_config={prune_config}",
        "--flops_input_size=",
    )
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {prune_config}, node 1: mismatched source"), last
    assert "block4/unit_1/bottleneck_v1/conv1" in last
    assert not (tmp_path / "out").exists()


def test_a_latency_target_and_a_factor_are_refused_together(tiny_config_path, tmp_path):
    run = _compress(
        f"--config_path={tiny_config_path}",
        "--input_checkpoint=unused",
        f"--output_dir={tmp_path}",
        "--target_speedup=2",
        "--compression_factor=0.5",
        "--latency_input_size=97,97",
    )
    assert run.returncode != 0
    assert "--target_speedup and --compression_factor are alternatives" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_compress_to_a_latency_target_writes_widths_trace_and_a_restorable_checkpoint(
    tiny_config_path, tmp_path, monkeypatch
):
    # The oracle timer stands in for the CPU (a shared machine's load moved real layer timings
    # by 3x in CI): the search, the reports and the checkpoint are what is tested here, and the
    # oracle's figure of the pruned model is what the latency model must predict exactly.
    monkeypatch.setattr(compress_latency.latency_models, "TFCPUTimer", OracleTimer)
    prefix = str(tmp_path / "model.ckpt-1")
    _checkpoint(tiny_config_path, prefix)
    output_dir = tmp_path / "targeted"
    compression.compress(
        config_path=tiny_config_path,
        input_checkpoint=prefix,
        output_dir=str(output_dir),
        flops_input_size=None,
        latency_input_size=(97, 97),
        latency_runs=2,
        recalibrate_bn_batches=1,
        search=compress_latency.SearchOptions(
            target_speedup=1.3,
            steps=1,
            eval_batches=1,
            recalibrate_batches=1,
            granularity="block",
            table_dir=str(tmp_path / "tables"),
            ratios=(1.0, 0.5),
            calibration_ratios=(0.5,),  # the default calibrated model, 11 model builds
        ),
    )
    found = json.loads((output_dir / "latency_widths.json").read_text())
    trace = json.loads((output_dir / "latency_search.json").read_text())
    assert (output_dir / "latency_search.png").stat().st_size > 0
    assert found["predicted_ms"] <= found["target_ms"] + 1e-6
    assert found["measured_ms"] == pytest.approx(found["predicted_ms"], rel=1e-9)
    assert trace["candidates"] and sum(c["chosen"] for c in trace["candidates"]) == trace["steps"]
    for group, kept in trace["widths"].items():
        assert 1 <= kept <= trace["sizes"][group]
    config = config_util.load_pipeline_config(str(output_dir / "pipeline.config"))
    pruned = model_builder.build(config.model)
    checkpoint_utils.restore_model(pruned, str(output_dir))
    widths = compression.compression.conv_widths(pruned)
    assert all(widths[scope] == kept for scope, kept in found["layer_widths"].items())
