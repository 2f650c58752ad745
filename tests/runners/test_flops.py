"""Tests of runners.flops: the FLOPs CLI of a config's model."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from builders import config_util, model_builder
from core.analysis.flops import compute_flops
from runners import flops
from tests.snippets import REPO_ROOT


def test_cli_prints_the_report(tiny_config_path):
    root = REPO_ROOT
    result = subprocess.run(
        [sys.executable, "-m", "runners.flops", f"--config_path={tiny_config_path}"]
        + ["--input_size=97,129"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "input 1x97x129x3:" in result.stdout and "Conv2D" in result.stdout


def test_config_flops_counts_the_config_model_at_the_given_size(tiny_config_path):
    # Oracle: the same model built straight from the parsed config by the model builder.
    config = config_util.load_pipeline_config(tiny_config_path)
    expected = compute_flops(model_builder.build(config.model), (97, 129))
    report = flops.config_flops(tiny_config_path, (97, 129))
    assert report.input_size == (97, 129) and report.batch_size == 1
    assert report.total_flops == expected.total_flops > 0
    assert report.params == expected.params > 0


def test_bad_input_size_names_the_flag():
    assert flops.parse_size("1025,2049") == (1025, 2049)
    with pytest.raises(ValueError, match="--input_size must be 'height,width'.*got '1025x2049'"):
        flops.parse_size("1025x2049")


def test_cli_reports_a_missing_config_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "runners.flops", f"--config_path={tmp_path / 'no.config'}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 1
    assert "error: config file not found" in result.stderr
    assert "Traceback" not in result.stderr
