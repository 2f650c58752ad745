"""Quiet consoles: TensorFlow's start-up chatter only with --verbose, every line printed once."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from runners import quiet_logs
from runners.quiet_logs import verbose_requested

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# What TensorFlow 2.21 prints from C++ when it is imported (each start-up line twice).
CHATTER = ("absl::InitializeLog()", "oneDNN custom operations are on")


def test_verbose_is_read_before_the_flags_are_parsed():
    assert verbose_requested(["x.py", "--verbose"])
    assert verbose_requested(["x.py", "-verbose=true"])
    assert not verbose_requested(["x.py", "--verbose", "--noverbose"])
    assert not verbose_requested(["x.py", "--verbose=false", "--config_path=a"])
    assert not verbose_requested(["x.py", "--verbosity=1", "--", "--verbose"])


def _eval(config: str, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    # The real default: no TF_CPP_MIN_LOG_LEVEL from the test environment.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    command = [
        sys.executable,
        "eval.py",
        f"--config_path={config}",
        f"--train_dir={tmp_path}/no_train_dir",
        f"--eval_dir={tmp_path}/eval",
        "--evaluate_all_from_checkpoint=model.ckpt-5",
        *extra,
    ]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_tensorflow_chatter_only_with_verbose(tiny_config_path, tmp_path):
    # The failure comes after TensorFlow is imported (the checkpoint folder is looked up).
    with ThreadPoolExecutor(2) as pool:
        quiet, verbose = pool.map(
            lambda extra: _eval(tiny_config_path, tmp_path, *extra), [(), ("--verbose",)]
        )
    output = quiet.stdout + quiet.stderr
    assert quiet.returncode == 1, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines == [line for line in lines if lines.count(line) == 1], output  # once each
    assert not [line for line in lines if any(text in line for text in CHATTER)], output
    assert "Traceback" not in output
    assert lines[-1].startswith("eval.py: error: train_dir"), output
    assert verbose.returncode == 1
    for text in CHATTER:
        assert text in verbose.stderr, verbose.stderr
    assert "Traceback" in verbose.stderr


def test_library_info_lines_are_dropped_but_not_warnings_or_the_projects_own():
    keep = quiet_logs._LibraryInfoFilter().filter

    def record(path, level):
        return logging.LogRecord("absl", level, path, 1, "message", None, None)

    site = "/venv/lib/python3.11/site-packages"
    assert not keep(record(f"{site}/tensorflow/python/saved_model/builder_impl.py", logging.INFO))
    assert not keep(record(f"{site}/keras/src/saving/saving_lib.py", logging.DEBUG))
    assert not keep(record(f"{site}/tf2onnx/tfonnx.py", logging.INFO))
    assert keep(record(f"{site}/tensorflow/python/ops/array_ops.py", logging.WARNING))
    assert keep(record("/work/main/core/deploy/exporter.py", logging.INFO))
    assert keep(record(f"{site}/fast_semantic_segmentation/runners/trainer.py", logging.INFO))


def _latency_table(*extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    # A missing config fails after the module's imports have loaded TensorFlow.
    command = [sys.executable, "-m", "runners.latency_table", "--config_path=/no/such.config"]
    return subprocess.run(
        [*command, *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_latency_table_module_is_quiet_without_verbose():
    with ThreadPoolExecutor(2) as pool:
        quiet, verbose = pool.map(lambda extra: _latency_table(*extra), [(), ("--verbose",)])
    guard = "cpu_feature_guard"  # "This TensorFlow binary is optimized to use ..."
    output = quiet.stdout + quiet.stderr
    assert quiet.returncode == 1, output
    assert not [line for line in output.splitlines() if any(t in line for t in (*CHATTER, guard))]
    assert output.strip().splitlines() == [
        "error: config file not found: '/no/such.config'. Pass --config_path with the path of an "
        "existing file."
    ], output
    assert verbose.returncode == 1
    for text in (*CHATTER, guard):
        assert text in verbose.stderr, verbose.stderr  # TensorFlow was imported, and chatted
    assert "Traceback" in verbose.stderr
