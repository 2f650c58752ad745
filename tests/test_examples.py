"""The example scripts' argument handling (examples/lib/common.sh): help, and one error line
with status 2 for each mistake, before any work starts. Bash only, no TensorFlow."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.snippets import REPO_ROOT

SCRIPTS = ("two_stage_synthetic", "bn_recalibration_synthetic", "latency_targeted_synthetic")


def _run(tmp_path, script: str, *args: str) -> subprocess.CompletedProcess:
    path = os.path.join(REPO_ROOT, "examples", f"{script}.sh")
    # From another folder: the scripts find the repository themselves.
    return subprocess.run(
        ["bash", path, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_the_header_and_an_unknown_argument_is_one_error(tmp_path, script):
    shown = _run(tmp_path, script, "--help")
    assert shown.returncode == 0
    header = open(os.path.join(REPO_ROOT, "examples", f"{script}.sh")).read().splitlines()[1]
    assert shown.stdout.splitlines()[0] == header.lstrip("# ")
    assert "Usage: examples/" in shown.stdout
    refused = _run(tmp_path, script, "--bogus", "1")
    assert refused.returncode == 2
    assert refused.stderr == "error: unknown argument '--bogus' (see --help)\n"
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    "script, args, message",
    [
        (
            "two_stage_synthetic",
            ["--stage1_steps", "0"],
            "steps must be positive integers, got '0'",
        ),
        ("two_stage_synthetic", ["--seed", "-1"], "--seed must be a non-negative integer"),
        (
            "bn_recalibration_synthetic",
            ["--num_batches", "x"],
            "steps and --num_batches must be positive integers, got 'x'",
        ),
        ("latency_targeted_synthetic", ["--search_steps", "0"], "steps must be positive"),
        ("latency_targeted_synthetic", ["--latency_runs", "0"], "--latency_runs must be positive"),
        (
            "latency_targeted_synthetic",
            ["--latency_size", "512x1024"],
            "--latency_size must be HEIGHT,WIDTH in pixels, e.g. 512,1024; got '512x1024'",
        ),
        (
            "latency_targeted_synthetic",
            ["--from", "/nonexistent"],
            "no stage 1 checkpoint in /nonexistent/icnet_stage_1/train",
        ),
    ],
)
def test_bad_values_are_one_error_line(tmp_path, script, args, message):
    done = _run(tmp_path, script, *args, "--output", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_shared_arguments_need_their_value(tmp_path, script):
    done = _run(tmp_path, script, "--output")
    assert done.returncode != 0
    assert done.stderr.strip().endswith("--output needs a value"), done.stderr
    assert not list(tmp_path.iterdir())


def test_seed_only_where_the_script_has_one(tmp_path):
    refused = _run(tmp_path, "latency_targeted_synthetic", "--seed", "1")
    assert refused.returncode == 2
    assert refused.stderr == "error: unknown argument '--seed' (see --help)\n"
    missing = _run(tmp_path, "two_stage_synthetic", "--seed")
    assert missing.returncode != 0 and "--seed needs a value" in missing.stderr
