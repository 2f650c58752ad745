"""SIGKILL during training and export: what is left is readable, and a seeded resume is exact.

train.py and export.py run in subprocesses on the tiny ICNet config. A kill lands at an exact
place through the test pauses of ``core.checkpoints.crash_safety`` (``FSS_TEST_PAUSE_AT``: the
process creates a marker file there and waits to be killed):

1. ``checkpoint_write:2``: the files of step 2 are written, the state file still names step 1;
2. ``after_save:3``: between steps, right after step 3 was saved;
3. the last resume runs to the end (step 4).

The resumed run's final checkpoint (weights, optimizer slots, step) must equal an uninterrupted
run's bit for bit, and every checkpoint left in the directory must be readable. For export.py,
a kill just before the new files are moved into place must leave the previous export byte for
byte as it was.
"""

from __future__ import annotations

import glob
import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from builders import config_util, model_builder
from core.checkpoints import checkpoint_utils, crash_safety
from core.deploy import exporter
from runners.export import export_inference_graph

# The scripts run in subprocesses, 5 runs of ~20-30 s CPU each (TF start-up and tracing).
pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_STEPS = 4


def _command(script: str, *args: str) -> list[str]:
    return [sys.executable, os.path.join(REPO, script), *args]


def _train_args(config_path: str, logdir: str) -> list[str]:
    return [
        f"--config_path={config_path}",
        f"--logdir={logdir}",
        f"--config_override=train_config {{ num_steps: {NUM_STEPS} }}",
        "--save_interval_secs=0",  # a checkpoint after every step
        "--seed=3",
        "--save_summaries_steps=0",
    ]


def _env(pause: str | None = None, marker: str | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop(crash_safety.PAUSE_ENV, None)
    if pause:
        env[crash_safety.PAUSE_ENV] = pause
        env[crash_safety.MARKER_ENV] = marker
    return env


def _start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), cwd=REPO
    )


def _wait(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]


def _run(command: list[str]) -> None:
    _wait(_start(command))


def _run_and_kill(command: list[str], pause: str, marker: str) -> None:
    """Runs until the process reaches the pause point, then SIGKILLs it."""
    with open(marker + ".log", "w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=_env(pause, marker), cwd=REPO
        )
        deadline = time.monotonic() + 300
        while not os.path.exists(marker):
            if process.poll() is not None:
                pytest.fail(f"ended before {pause}: {open(marker + '.log').read()[-3000:]}")
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"never reached {pause}")
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL


def _tensors(prefix: str) -> dict[str, np.ndarray]:
    """Every value of a checkpoint but the save counter (how many saves a process made)."""
    reader = tf.train.load_checkpoint(prefix)
    return {
        key: reader.get_tensor(key)
        for key in reader.get_variable_to_shape_map()
        if not key.startswith(("save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"))
    }


def _assert_all_readable(logdir: str) -> list[str]:
    """Reads every tensor of every checkpoint present; returns their names."""
    indexes = sorted(glob.glob(os.path.join(logdir, "model.ckpt-*.index")))
    for index in indexes:
        _tensors(index[: -len(".index")])  # raises on a truncated or missing file
    data = glob.glob(os.path.join(logdir, "model.ckpt-*.data-*"))
    assert len(data) == len(indexes), sorted(os.listdir(logdir))
    assert not glob.glob(os.path.join(logdir, "*_temp")), sorted(os.listdir(logdir))
    return [os.path.basename(index)[: -len(".index")] for index in indexes]


def test_killed_training_resumes_to_the_uninterrupted_weights(tiny_config_path, tmp_path):
    reference = str(tmp_path / "reference")
    # The uninterrupted run goes alongside the killed ones (they share no files).
    uninterrupted = _start(_command("train.py", *_train_args(tiny_config_path, reference)))

    logdir = str(tmp_path / "killed")
    train = _command("train.py", *_train_args(tiny_config_path, logdir))
    # 1. Inside the save of step 2: its files are written, not yet listed.
    _run_and_kill(train, "checkpoint_write:2", str(tmp_path / "marker-1"))
    assert tf.train.latest_checkpoint(logdir) == os.path.join(logdir, "model.ckpt-1")
    assert os.path.exists(os.path.join(logdir, "model.ckpt-2.index"))
    _assert_all_readable(logdir)
    # 2. Resumed from step 1; killed between steps, right after step 3 was saved.
    _run_and_kill(train, "after_save:3", str(tmp_path / "marker-2"))
    assert tf.train.latest_checkpoint(logdir) == os.path.join(logdir, "model.ckpt-3")
    # 3. Resumed from step 3 to the end.
    _run(train)

    _wait(uninterrupted)
    final = tf.train.latest_checkpoint(logdir)
    assert final == os.path.join(logdir, f"model.ckpt-{NUM_STEPS}")
    expected = _tensors(os.path.join(reference, f"model.ckpt-{NUM_STEPS}"))
    actual = _tensors(final)
    assert set(actual) == set(expected)
    assert any("optimizer" in key for key in actual)  # slots and iterations compared too
    for key, value in expected.items():
        np.testing.assert_array_equal(actual[key], value, err_msg=key)
    assert _assert_all_readable(logdir)[-1] == f"model.ckpt-{NUM_STEPS}"


def _digest(directory: str) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``directory`` (hidden ones included)."""
    digests = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as stream:
                digests[os.path.relpath(path, directory)] = hashlib.sha256(
                    stream.read()
                ).hexdigest()
    return digests


def test_killed_export_leaves_the_previous_export(tiny_config_path, tmp_path):
    # Two checkpoints with different weights, written here (no training run needed).
    config = config_util.load_pipeline_config(tiny_config_path)
    model = model_builder.build(config.model)
    variables = checkpoint_utils.ensure_named_variables(model)
    first = checkpoint_utils.write_model_checkpoint(model, str(tmp_path / "a"), "model.ckpt")
    name = sorted(variables)[0]
    variables[name].assign(variables[name] + 1.0)
    second = checkpoint_utils.write_model_checkpoint(model, str(tmp_path / "b"), "model.ckpt")
    output = str(tmp_path / "export")

    def export(checkpoint: str) -> list[str]:
        return _command(
            "export.py",
            f"--config_path={tiny_config_path}",
            f"--trained_checkpoint={checkpoint}",
            f"--output_dir={output}",
            "--input_shape=1,97,129,3",
            "--formats=frozen_graph,saved_model",
        )

    # The previous export, made in this process (it only has to be there).
    export_inference_graph(
        tiny_config_path, first, output, "1,97,129,3", formats=("frozen_graph", "saved_model")
    )
    before = _digest(output)
    assert "saved_model/saved_model.pb" in before and "frozen_inference_graph.pb" in before
    # Every file of the new export is written (staged); killed before it is moved into place.
    _run_and_kill(export(second), "export_commit", str(tmp_path / "marker"))
    after = _digest(output)
    staged = {name: digest for name, digest in after.items() if name.startswith(".")}
    # The kill landed after the new export was complete: its graph differs from the old one.
    new_graph = [name for name in staged if name.endswith("/frozen_inference_graph.pb")]
    assert len(new_graph) == 1 and staged[new_graph[0]] != before["frozen_inference_graph.pb"]
    assert {name: digest for name, digest in after.items() if name not in staged} == before
    # The next export into the folder first discards the uncommitted staging folder.
    exporter.recover_interrupted_export(output)
    assert _digest(output) == before
