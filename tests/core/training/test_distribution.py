"""Distributed training on CPU: MirroredStrategy over two logical CPUs, and two worker processes.

TensorFlow allows one multi-device strategy per process, so every distributed case runs in its
own Python subprocess (started here, with the repository on PYTHONPATH) and reports JSON on its
last stdout line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from core.training import distribution
from tests.conftest import TINY_CONFIG
from tests.snippets import REPO_ROOT

REPO = REPO_ROOT
TIMEOUT_S = 300

MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np, tensorflow as tf
    from builders import config_util, losses_builder, model_builder
    from core.training import distribution
    from runners import trainer
    from core.training.train_step import TrainStep

    config_path, logdir = sys.argv[1:3]
    config = config_util.load_pipeline_config(config_path)
    options = trainer.TrainOptions(
        num_clones=2, clone_on_cpu=True, num_steps=1, save_summaries_steps=0, seed=1
    )
    report = {}
    odd = config_util.apply_overrides(config, "train_config { batch_size: 3 }")
    try:
        trainer.train(odd, logdir + "_odd", options)
    except trainer.TrainError as error:
        report["odd_batch_error"] = str(error)
    result = trainer.train(config, logdir, options)
    report.update(step=result.step, loss=result.loss, checkpoint=result.checkpoint_path)

    # The replicas' summed gradients equal the single-device gradient of the whole batch.
    # In float64: in float32 the two sums differ by rounding, which flips a few ReLUs whose
    # input is within ~1e-5 of zero, and on the tiny maps of this model one flipped ReLU moves
    # a kernel gradient by a percent, by an amount that depends on the CPU's kernels.
    strategy = distribution.get_strategy(2, clone_on_cpu=True)
    report["replicas"] = strategy.num_replicas_in_sync
    keras.config.set_dtype_policy("float64")
    keras.utils.set_random_seed(2)
    with strategy.scope():
        synced = model_builder.build(config.model, sync_batch_norm=True)
        synced.build_variables()
    plain = model_builder.build(config.model)
    plain.build_variables()
    for name, variable in plain.named_variables().items():
        variable.assign(synced.named_variables()[name].read_value())
    loss_fn = losses_builder.build(config.model.icnet, plain.output_specs(training=True))
    images = tf.random.stateless_uniform([2, 97, 97, 3], [1, 2], 0.0, 255.0, tf.float64)
    labels = tf.random.stateless_uniform([2, 97, 97, 1], [3, 4], 0, 19, tf.int32)

    single = TrainStep(plain, loss_fn, None, plain.trainable_variables,
                       tf.distribute.get_strategy(), None)
    single_losses, single_grads = single.gradients(images, labels)

    mirrored = TrainStep(synced, loss_fn, None, synced.trainable_variables, strategy, None)
    def shard(tensor):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tensor[ctx.replica_id_in_sync_group : ctx.replica_id_in_sync_group + 1])
    losses, grads = strategy.run(mirrored.gradients, args=(shard(images), shard(labels)))
    total = strategy.reduce("SUM", losses["total"], axis=None) / 2
    summed = [strategy.reduce("SUM", g, axis=None) for g in grads]
    diffs = [float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(summed, single_grads)]
    scale = max(float(tf.reduce_max(tf.abs(g))) for g in single_grads)
    report.update(
        loss_diff=abs(float(total) - float(single_losses["total"])),
        grad_max_diff=max(diffs),
        grad_scale=scale,
    )
    print(json.dumps(report))
    """
)

WORKER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    from builders import config_util
    from runners import trainer

    # Eager steps: the collectives between the processes are the same, without a ~15 s trace
    # per worker (the compiled distributed step is covered by the mirrored test).
    tf.config.run_functions_eagerly(True)

    config_path, logdir = sys.argv[1:3]
    options = trainer.TrainOptions(num_steps=2, save_summaries_steps=0, seed=1)
    result = trainer.train(config_util.load_pipeline_config(config_path), logdir, options)
    print(json.dumps({"step": result.step, "loss": result.loss,
                      "checkpoint": result.checkpoint_path}))
    """
)


def _environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _report(stdout: str, stderr: str) -> dict:
    lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
    assert lines, f"no report on stdout.\nstdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-3000:]}"
    return json.loads(lines[-1])


def _free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.fixture(scope="module")
def runs(synthetic_records, tmp_path_factory) -> dict:
    """Runs the mirrored process and the two workers concurrently; returns their reports.

    Each spends most of its time tracing its own graph, so running them side by side shortens
    the wall time on a multi-core machine.
    """
    directory = tmp_path_factory.mktemp("distributed")
    config_path = str(directory / "tiny_icnet.config")
    with open(config_path, "w") as handle:
        handle.write(TINY_CONFIG.format(**synthetic_records))
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    worker_logdir = str(directory / "workers")
    commands = {"mirrored": ([MIRRORED_SCRIPT, config_path, str(directory / "mirrored")], {})}
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        commands[f"worker{index}"] = (
            [WORKER_SCRIPT, config_path, worker_logdir],
            {"TF_CONFIG": tf_config},
        )
    processes = {}
    try:
        for name, (args, env) in commands.items():
            processes[name] = subprocess.Popen(
                [sys.executable, "-c", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_environment(**env),
                cwd=REPO,
            )
        outputs = {
            name: process.communicate(timeout=TIMEOUT_S) for name, process in processes.items()
        }
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    reports = {}
    for name, (stdout, stderr) in outputs.items():
        assert processes[name].returncode == 0, f"{name} failed:\n{stderr[-4000:]}"
        reports[name] = _report(stdout, stderr)
    reports["worker_logdir"] = worker_logdir
    return reports


def test_mirrored_two_cpus_matches_single_device(runs):
    report = runs["mirrored"]
    assert report["replicas"] == 2
    assert "batch_size (3)" in report["odd_batch_error"]
    assert "2 replicas" in report["odd_batch_error"]
    assert report["step"] == 1
    assert report["checkpoint"].endswith("model.ckpt-1")
    assert report["loss_diff"] < 1e-5
    # Synchronised BN computes the variance as E[x^2] - E[x]^2 over both replicas, plain BN
    # as E[(x - mean)^2]: the same value up to rounding. The gradients are compared in float64
    # (see the script), where that rounding stays near 1e-14 of the largest gradient.
    assert report["grad_max_diff"] <= 1e-9 * report["grad_scale"]


def test_multi_worker_two_processes(runs):
    reports = [runs["worker0"], runs["worker1"]]
    assert [report["step"] for report in reports] == [2, 2]
    # Both workers saw the same all-reduced loss and the chief's checkpoint is in the logdir.
    assert reports[0]["loss"] == pytest.approx(reports[1]["loss"], rel=1e-6)
    logdir = runs["worker_logdir"]
    assert reports[0]["checkpoint"] == os.path.join(logdir, "model.ckpt-2")
    assert os.path.exists(os.path.join(logdir, "model.ckpt-2.index"))
    assert not [name for name in os.listdir(logdir) if name.startswith(".worker")]


def test_tf_config_errors(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(distribution.DistributionError, match="not valid JSON"):
        distribution.cluster_spec_from_env()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"ps": ["a:1"], "worker": ["b:2"]}}))
    with pytest.raises(distribution.DistributionError, match="parameter servers"):
        distribution.cluster_spec_from_env()
    monkeypatch.setenv("TF_CONFIG", "")
    assert distribution.cluster_spec_from_env() is None


def test_single_device_and_bad_clones():
    import tensorflow as tf

    assert distribution.get_strategy(1) is tf.distribute.get_strategy()
    with pytest.raises(distribution.DistributionError, match="num_clones"):
        distribution.get_strategy(0)
    if not tf.config.list_logical_devices("GPU"):
        with pytest.raises(distribution.DistributionError, match="--clone_on_cpu"):
            distribution.get_strategy(2)
