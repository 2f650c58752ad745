"""One training configuration, timed and measured in its own process (run by train_bench).

``python -m benchmarks.train_child --case '<json>' --output result.json`` builds the model,
loss, optimizer and compiled step of a pipeline config with ``runners.trainer.build_train_step``
(what ``train.py`` and ``train_mem_saving.py`` run), feeds it one fixed
in-memory batch (so the input pipeline is not part of the step time), runs warm-up steps and
timed steps, and writes the step times and peak memory as JSON. ``mem_saving`` makes the one
change ``train_mem_saving.py`` makes: what its ``--checkpoint_nodes`` plan (the case's ``plan``,
``measured`` unless set) selects runs under ``tf.recompute_grad``. ``memory_cap_bytes`` caps the
resident set (:mod:`benchmarks.memory_cap`): over it, ``oom_output`` gets ``{"oom": true}``.

Running each configuration in a fresh process keeps the peak memory of one from showing in
another's: the process's peak RSS (``VmHWM``) covers Python, TensorFlow, the model, the
optimizer slots and the step, and the peak GPU memory comes from
``tf.config.experimental.get_memory_info``. The step's own memory is the live-tensor peak of
TensorFlow's CPU allocator over the timed steps (``cpu_tensors_*``, after warm-up): RSS also
counts the first step's tracing and what malloc keeps cached, which recomputation cannot shrink.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags

flags.DEFINE_string("case", None, "JSON description of the case (see train_bench.TrainCase).")
flags.DEFINE_string("output", None, "Where to write the JSON result.")


def _rss_bytes() -> int | None:
    """Current resident set size, or None."""
    from core.training.train_progress import proc_status_bytes

    return proc_status_bytes("VmRSS")


def _reset_rss_peak() -> int | None:
    """Resets the peak resident set (``VmHWM``) to the current one; returns that, or None.

    Linux resets it on writing 5 to ``/proc/self/clear_refs``; None where that is refused.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as stream:
            stream.write("5")
    except OSError:
        return None
    return _rss_bytes()


def _crop(config, case: dict) -> tuple[int, int]:
    if case.get("crop"):
        return tuple(case["crop"])
    for step in config.train_config.preprocessor_step:
        if step.WhichOneof("preprocessing_step") == "random_image_crop":
            return step.random_image_crop.crop_height, step.random_image_crop.crop_width
    raise ValueError("the config has no random_image_crop step; give the case a crop.")


def build_step(
    config, batch_size: int, crop: tuple[int, int], mem_saving: bool, policy, plan: str = "measured"
):
    """The compiled training step of the config's model on one fixed batch.

    The model, loss, optimizer, trained variables and step are built by
    ``runners.trainer.build_train_step``, as ``train.py`` builds them.

    Returns:
      ``(run, model)``: ``run()`` does one step and blocks until its loss is computed.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from benchmarks.models import SEED
    from builders import model_builder
    from core.data.standard_fields import InputDataFields
    from runners import trainer

    _, model_config = model_builder.model_config(config)
    strategy = tf.distribute.get_strategy()
    keras.utils.set_random_seed(SEED)
    options = trainer.TrainOptions(
        mixed_precision=policy is not None,
        gradient_checkpointing=mem_saving,
        checkpoint_nodes=(plan,) if mem_saving else (),
    )
    parts = trainer.build_train_step(config, options, strategy)
    rng = np.random.default_rng(SEED)
    height, width = crop
    batch = {
        InputDataFields.input_image: rng.uniform(0, 255, (batch_size, height, width, 3)).astype(
            np.float32
        ),
        InputDataFields.groundtruth: rng.integers(
            0, model_config.num_classes, (batch_size, height, width, 1), dtype=np.int32
        ),
    }
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))

    def run() -> float:
        return float(parts.step_fn(iterator)["losses"]["total"])

    return run, parts.model


def run_case(case: dict) -> dict:
    """Builds, warms up and times one case; returns the measurements."""
    import tensorflow as tf

    from benchmarks import memory_cap
    from benchmarks.models import precision_policy, repo_path
    from builders import config_util
    from core.analysis import latency
    from core.training.train_progress import peak_rss_bytes, proc_status_bytes

    config = config_util.load_pipeline_config(
        repo_path(case["config_path"]), case.get("config_override"), validate=False
    )
    batch_size = case.get("batch_size") or config.train_config.batch_size
    crop = _crop(config, case)
    policy = precision_policy(case.get("mixed_precision", False))
    gpus = tf.config.list_logical_devices("GPU")
    plan = case.get("plan") or "measured"
    mem_saving = case.get("mem_saving", False)
    cap = case.get("memory_cap_bytes")
    if cap:
        memory_cap.start_watchdog(cap, case.get("oom_output"), batch_size)
    run, model = build_step(config, batch_size, crop, mem_saving, policy, plan)
    rss_before = _rss_bytes()
    if gpus:
        tf.config.experimental.reset_memory_stats(gpus[0].name)
    gpu_before = tf.config.experimental.get_memory_info(gpus[0].name)["current"] if gpus else None
    started = time.perf_counter()
    loss = run()
    first_step = time.perf_counter() - started
    for _ in range(max(case.get("warmup", 2) - 1, 0)):
        run()
    if cap:
        memory_cap.check(cap, case.get("oom_output"), batch_size)
    # The steady state: the peaks of the timed steps alone, without the first step's tracing,
    # graph optimization and oneDNN primitive creation.
    steady_rss_before = _reset_rss_peak()
    tf.config.experimental.reset_memory_stats("CPU:0")
    tensors_before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    stats = latency.measure(run, warmup=0, runs=case["steps"])
    tensors_peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
    if cap:
        memory_cap.check(cap, case.get("oom_output"), batch_size)
    seconds = stats.median_ms / 1000.0
    return {
        "model": model.name,
        "filter_scale": model.filter_scale,
        "batch_size": batch_size,
        "crop": list(crop),
        "mem_saving": mem_saving,
        "plan": plan if mem_saving else None,
        "memory_cap_bytes": cap,
        "recompute_segments": sorted(model.recompute_scopes),
        "precision": policy or "float32",
        "device": "GPU" if gpus else "CPU",
        "first_step_s": round(first_step, 3),
        "first_loss": loss,
        "step": stats.as_dict(),
        "warmup": case.get("warmup", 2),
        "s_per_step": seconds,
        "images_per_s": batch_size / seconds,
        "rss_before_steps_bytes": rss_before,
        "peak_rss_bytes": peak_rss_bytes(),
        "steady_rss_before_bytes": steady_rss_before,
        "steady_peak_rss_bytes": proc_status_bytes("VmHWM") if steady_rss_before else None,
        "cpu_tensors_before_bytes": tensors_before,
        "cpu_tensors_peak_bytes": tensors_peak,
        "gpu_before_steps_bytes": gpu_before,
        "gpu_peak_bytes": (
            tf.config.experimental.get_memory_info(gpus[0].name)["peak"] if gpus else None
        ),
    }


def main(argv) -> None:
    del argv
    case = json.loads(flags.FLAGS.case)
    result = run_case(case)
    from core import file_utils

    file_utils.atomic_write_text(flags.FLAGS.output, json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    flags.mark_flags_as_required(["case", "output"])
    app.run(main)
