"""The benchmark harness: a --quick run writes its files; failures become table entries.

The run is a subprocess (absl flags are process-global). Speeds are reported, never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks import plan, report

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = ("icnet_0.5", "icnet_mobilenet_v2")
SIZE = "97x193"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> dict:
    """``results.json`` of a --quick run of the params, latency, roofline and profile sections."""
    output = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--sections=params,latency,roofline,profile",
            f"--models={','.join(MODELS)}",
            f"--sizes={SIZE}",
            "--runs=2",
            "--warmup=1",
            f"--output_dir={output}",
            "--device_label=test run",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (output / report.MARKDOWN_NAME).is_file()
    with open(output / report.JSON_NAME, encoding="utf-8") as stream:
        document = json.load(stream)
    document["markdown"] = (output / report.MARKDOWN_NAME).read_text(encoding="utf-8")
    return document


def test_quick_run_writes_every_expected_cell_with_positive_numbers(quick_run):
    cells = quick_run["cells"]
    expected = {"roofline/matmul", f"profile/{MODELS[0]}/{SIZE}"}
    for model in MODELS:
        expected |= {
            f"params/{model}",
            f"latency/{model}/checkpoint/{SIZE}",
            f"roofline/{model}/{SIZE}",
        }
    assert set(cells) == expected
    assert all(cell["status"] == "ok" for cell in cells.values()), cells
    for model in MODELS:
        assert cells[f"params/{model}"]["params"] > 0
        assert cells[f"params/{model}"]["flops"][SIZE] > 0
        timing = cells[f"latency/{model}/checkpoint/{SIZE}"]
        assert 0 < timing["min_ms"] <= timing["median_ms"] <= timing["max_ms"]
        assert timing["runs"] == 2 and timing["threads"] >= 1
    assert cells["roofline/matmul"]["gflops_per_s"] > 0
    machine = quick_run["machine"]
    assert machine["label"] == "test run" and machine["tensorflow"]
    assert quick_run["settings"]["quick"] is True
    markdown = quick_run["markdown"]
    assert "## Inference latency (batch 1)" in markdown and "test run" in markdown


def test_parameters_match_the_config_built_independently(quick_run):
    from builders import config_util, model_builder

    for model in MODELS:
        cell = quick_run["cells"][f"params/{model}"]
        config = config_util.load_pipeline_config(
            os.path.join(REPO, cell["config"]), cell["config_override"], validate=False
        )
        built = model_builder.build(config.model)
        built.build_variables()
        assert cell["params"] == built.count_parameters()
        assert f"{cell['params']:,}" in quick_run["markdown"]


def test_roofline_is_flops_over_latency_from_the_raw_fields(quick_run):
    cells = quick_run["cells"]
    matmul = cells["roofline/matmul"]
    n = matmul["n"]
    assert matmul["gflops_per_s"] == pytest.approx(2 * n**3 / (matmul["median_ms"] / 1e3) / 1e9)
    for model in MODELS:
        flops = cells[f"params/{model}"]["flops"][SIZE]
        median_ms = cells[f"latency/{model}/checkpoint/{SIZE}"]["median_ms"]
        rate = flops / (median_ms / 1e3) / 1e9
        roofline = cells[f"roofline/{model}/{SIZE}"]
        assert roofline["gflops_per_s"] == pytest.approx(rate)
        assert roofline["percent_of_matmul"] == pytest.approx(100 * rate / matmul["gflops_per_s"])


def test_profile_accounts_for_every_op_once(quick_run):
    """Op times add up the same by type and by part, and the convolutions are in them."""
    cell = quick_run["cells"][f"profile/{MODELS[0]}/{SIZE}"]
    assert cell["total_ms"] > 0
    assert sum(cell["by_type_ms"].values()) == pytest.approx(cell["total_ms"])
    assert sum(cell["by_part_ms"].values()) == pytest.approx(cell["total_ms"])
    assert cell["by_type_ms"]["Conv2D"] > 0
    assert {"block1", "block4", "CascadeFeatureFusion"} <= set(cell["by_part_ms"])
    assert cell["gflops"] == pytest.approx(
        quick_run["cells"][f"params/{MODELS[0]}"]["flops"][SIZE] / 1e9, rel=0.05
    )
    assert f"## Where the time goes: {MODELS[0]}" in quick_run["markdown"]


def test_model_parts_of_node_names():
    from benchmarks.profile_bench import model_part

    prefix = "ICNet_1/SharedFeatureExtractor.resnet_v1_50."
    assert model_part(prefix + "block3.unit_2.bottleneck_v1_1/conv_1/convolution") == "block3"
    assert model_part(prefix + "conv1_1/conv_1/convolution") == "backbone stem"
    assert model_part("ICNet_1/CascadeFeatureFusion_1_2/x/convolution") == "CascadeFeatureFusion_1"
    assert model_part("ICNet_1/CascadeFeatureFusion_1/ResizeBilinear") == "CascadeFeatureFusion"
    assert model_part("ICNet_1/FastPSPModule_1/AvgPool2D") == "FastPSPModule"
    assert model_part("ICNet_1/Predictions.Conv_1/conv_1/convolution") == "prediction convs"
    assert model_part("sub") == "other (preprocess, adds, resizes)"


# ----------------------------------------------------------------------------- no TensorFlow


def test_a_failing_task_is_recorded_and_the_run_goes_on():
    def broken(results):
        results.set("a/first", value=1.0)
        raise RuntimeError("TFLite conversion failed: op FOO\nmore detail")

    tasks = [
        plan.Task("broken", ["a/first", "a/second"], broken),
        plan.Task("fine", ["b"], lambda results: results.set("b", value=2.0)),
        plan.Task("silent", ["c"], lambda results: None),
    ]
    updates = []
    results = plan.run_tasks(tasks, plan.Results(), on_update=lambda r: updates.append(1))
    cells = results.cells
    assert cells["a/first"] == {"status": "ok", "value": 1.0}
    assert cells["a/second"] == {
        "status": "failed",
        "reason": "RuntimeError: TFLite conversion failed: op FOO",
    }
    assert cells["b"]["status"] == "ok"
    assert cells["c"]["status"] == "failed"
    assert len(updates) == 3


def test_time_left_scales_the_estimates_by_the_speed_so_far():
    now = [0.0]
    progress = plan.Progress([10.0, 10.0, 20.0], clock=lambda: now[0])
    assert progress.remaining() == pytest.approx(40.0)
    now[0] = 20.0  # the first task took twice its estimate
    progress.task_done()
    assert progress.remaining() == pytest.approx(60.0)


def test_markdown_shows_a_failed_cell_with_its_reason():
    cell = {"status": "ok", "median_ms": 10.0, "p25_ms": 9.0, "p75_ms": 11.0}
    cell.update(fps=100.0, warmup=1, runs=3, precision="float32")
    document = {
        "machine": {
            "cpu_model": "CPU",
            "usable_cores": 2,
            "cpu_count": 2,
            "tf_threads": 2,
            "accelerators": [],
            "memory_gib": 1.0,
            "tensorflow": "2.x",
            "python": "3",
            "platform": "linux",
            "git_commit": "abc",
            "date_utc": "today",
        },
        "settings": {
            "command": "python -m benchmarks.run",
            "total_time": "1 min",
            "quick": False,
            "sizes": ["8x8"],
            "coverage_note": "",
        },
        "cells": {
            "latency/m/checkpoint/8x8": cell,
            "latency/m/tflite_int8/8x8": {"status": "failed", "reason": "no int8 | kernel"},
        },
    }
    markdown = report.render_markdown(document)
    assert "10.0 (9.0–11.0)" in markdown
    assert "failed: no int8 \\| kernel" in markdown
    assert "## Failed cells" in markdown
