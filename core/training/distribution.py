"""Choosing the ``tf.distribute`` strategy of a training run.

* ``TF_CONFIG`` set (a cluster of workers): ``MultiWorkerMirroredStrategy``, one process per
  worker, each using its local GPUs (or its CPU). This replaces the original's TF1 flags
  ``--num_replicas``, ``--num_ps_tasks``, ``--master`` and ``--task``.
* ``num_clones > 1``: ``MirroredStrategy`` over that many local GPUs, or, with
  ``clone_on_cpu``, over that many logical CPU devices (how the tests run it on a laptop).
* otherwise: the default (no-op) strategy, or the CPU alone with ``clone_on_cpu``.

TensorFlow allows one collective-communication setup per process: a second ``MirroredStrategy``
fails with "Shape mismatch in the collective instance", and ``MultiWorkerMirroredStrategy`` must
be created before any other op runs. :func:`get_strategy` therefore creates the strategy once per
process and hands the same object back for the same settings.
"""

from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf
from absl import logging


class DistributionError(ValueError):
    """The requested device setup cannot be made; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class _StrategyKey:
    num_clones: int
    clone_on_cpu: bool
    tf_config: str


_strategy: tf.distribute.Strategy | None = None
_strategy_key: _StrategyKey | None = None


def cluster_spec_from_env() -> dict | None:
    """The parsed ``TF_CONFIG`` environment variable, or None when unset or empty.

    Raises:
      DistributionError: it is not JSON, has no ``cluster``, or asks for parameter servers.
    """
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise DistributionError(
            f"TF_CONFIG is not valid JSON ({error}); set it to e.g. "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}} or unset it.'
        ) from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not cluster:
        raise DistributionError('TF_CONFIG has no "cluster"; set {"cluster": {"worker": [...]}}.')
    if "ps" in cluster:
        raise DistributionError(
            "TF_CONFIG lists parameter servers (ps); training here is synchronous "
            "(MultiWorkerMirroredStrategy) and needs only chief/worker tasks."
        )
    return config


def configure_cpu_devices(num_devices: int) -> list[str]:
    """Splits the host CPU into ``num_devices`` logical devices, e.g. ``/cpu:0``, ``/cpu:1``.

    Must run before TensorFlow initialises its devices (before the first op).

    Raises:
      DistributionError: the devices were initialised already with fewer CPUs.
    """
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is None or len(current) < num_devices:
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices
            )
        except RuntimeError:
            raise DistributionError(
                f"cannot make {num_devices} CPU clones: TensorFlow's devices were initialised "
                "before the strategy was chosen. Choose it (core.training.distribution.get_strategy) "
                "before running any TensorFlow op."
            ) from None
    return [f"/cpu:{index}" for index in range(num_devices)]


def _create(num_clones: int, clone_on_cpu: bool, tf_config: dict | None) -> tf.distribute.Strategy:
    if tf_config is not None:
        task = tf_config.get("task", {})
        logging.info(
            "TF_CONFIG: MultiWorkerMirroredStrategy as %s %s of %s",
            task.get("type"),
            task.get("index"),
            {name: len(hosts) for name, hosts in tf_config["cluster"].items()},
        )
        if num_clones > 1:
            logging.warning(
                "--num_clones=%d is ignored under TF_CONFIG: every worker uses all its GPUs.",
                num_clones,
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if num_clones > 1:
        if clone_on_cpu:
            devices = configure_cpu_devices(num_clones)
        else:
            gpus = tf.config.list_logical_devices("GPU")
            if len(gpus) < num_clones:
                raise DistributionError(
                    f"--num_clones={num_clones} needs {num_clones} GPUs but {len(gpus)} are "
                    "visible; lower --num_clones, or pass --clone_on_cpu to run the clones on "
                    "the CPU."
                )
            devices = [gpu.name for gpu in gpus[:num_clones]]
        logging.info("MirroredStrategy over %s (synchronised batch norm)", ", ".join(devices))
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def get_strategy(num_clones: int = 1, clone_on_cpu: bool = False) -> tf.distribute.Strategy:
    """The strategy for these settings and the ``TF_CONFIG`` environment.

    Args:
      num_clones: model replicas on this machine (the original's ``--num_clones``), >= 1.
      clone_on_cpu: put the replicas on (logical) CPU devices instead of GPUs.

    Returns:
      The process's strategy; the same object for the same settings.

    Raises:
      DistributionError: invalid settings, too few GPUs, a malformed ``TF_CONFIG``, or another
        multi-device strategy already made in this process.
    """
    global _strategy, _strategy_key
    if isinstance(num_clones, bool) or not isinstance(num_clones, int) or num_clones < 1:
        raise DistributionError(f"--num_clones must be an integer >= 1, got {num_clones!r}.")
    tf_config = cluster_spec_from_env()
    if tf_config is None and num_clones == 1 and not clone_on_cpu:
        # The default strategy sets up no collectives, so it can follow any other.
        return tf.distribute.get_strategy()
    key = _StrategyKey(num_clones, clone_on_cpu, json.dumps(tf_config, sort_keys=True))
    if _strategy is not None:
        if key == _strategy_key:
            return _strategy
        if _strategy.num_replicas_in_sync > 1 or _strategy_key.tf_config != "null":
            raise DistributionError(
                f"this process already trains with {_strategy_key}; TensorFlow allows one "
                "multi-device strategy per process, so run other settings in a new process."
            )
    _strategy = _create(num_clones, clone_on_cpu, tf_config)
    _strategy_key = key
    return _strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints and summaries (always true on one machine)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type in (None, "worker") and task_id in (None, 0) and not has_chief


def worker_directory(logdir: str, strategy: tf.distribute.Strategy) -> str:
    """Where this process writes checkpoints: ``logdir`` on the chief, a scratch dir elsewhere.

    Under ``MultiWorkerMirroredStrategy`` every worker must take part in each save (reading
    synchronised variables is a collective), but only the chief's copy is kept.
    """
    if is_chief(strategy):
        return logdir
    resolver = strategy.cluster_resolver
    return os.path.join(logdir, f".worker_{resolver.task_type}_{resolver.task_id}")
