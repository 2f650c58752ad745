"""The pieces of compression that need no config: widths, checkpoint, summary, plots, latency.

``runners/compress.py`` (what ``compress.py`` runs) loads the config and the checkpoint, prunes
with :class:`core.pruning.FilterPruner`, builds the pruned model from the written config and
uses this module for the rest. Together they write into ``output_dir``:
  ``pruned_model.ckpt.{index,data-*}`` (+ a ``checkpoint`` state file): every variable of the
    pruned model, in our checkpoint format, with ``step`` 0;
  ``pipeline.config``: the input config with the model's shape changed so that it builds the
    pruned model directly: ``filter_scale`` times the factor when every conv is cut uniformly
    (e.g. ICNet 1.0 at 0.5 -> filter_scale 0.5), else per-conv ``layer_widths``;
  ``compression_summary.json``: parameters and FLOPs before and after, the groups pruned, and
    with ``latency_input_size`` the measured CPU latency of both models;
  ``l1_norms/*.png`` with ``interactive``: the sorted L1 norms of every group with the cut-off.

Latency is the median wall time of one batch-1 float32 forward pass (preprocess + network, eval
mode) inside a ``tf.function`` with a fixed input signature, placed on the CPU and timed by
``core/analysis/latency.py`` after untimed warm-up runs. It is skipped with ``soft_apply``: zeroed
channels keep every shape, so both models do the same work.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import tensorflow as tf
from absl import logging

from core import file_utils
from core.analysis import flops, latency
from core.checkpoints import checkpoint_utils
from core.pruning.pruner import PruneResult

CHECKPOINT_NAME = "pruned_model.ckpt"
SUMMARY_NAME = "compression_summary.json"
LATENCY_WARMUP = 2


@dataclasses.dataclass
class CompressionOutput:
    """Paths written and the numbers logged."""

    checkpoint: str
    pipeline_config: str
    summary: dict


def conv_widths(model) -> dict[str, int]:
    """Output filters of every non-depthwise, non-prediction conv of a (constructed) model.

    Args:
      model: a model implementing the contract's ``named_layers`` and ``prediction_scopes``.
    """
    prediction = set(model.prediction_scopes())
    return {
        scope: layer.filters
        for scope, layer in model.named_layers().items()
        if scope not in prediction and not getattr(layer, "depthwise", False)
    }


def save_checkpoint(model, output_dir: str) -> str:
    """Writes ``<output_dir>/pruned_model.ckpt`` atomically (``write_model_checkpoint``)."""
    return checkpoint_utils.write_model_checkpoint(model, output_dir, CHECKPOINT_NAME)


def plot_l1_norms(result: PruneResult, output_dir: str) -> list[str]:
    """One PNG per pruned group: sorted L1 norms with the cut-off line (the original's
    ``--interactive`` plots, written to files instead of shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    folder = os.path.join(output_dir, "l1_norms")
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, scores in result.scores.items():
        cut = scores.size - int(result.masks[name].sum())
        figure, axes = plt.subplots(figsize=(6, 3))
        axes.plot(np.sort(scores))
        axes.axvline(cut, color="red")
        axes.set_title(f"{name} (keep {scores.size - cut} of {scores.size})", fontsize=7)
        axes.set_xlabel("filter (sorted)")
        axes.set_ylabel("L1 norm")
        path = os.path.join(folder, name.replace("/", "__") + ".png")
        with file_utils.atomic_path(path, suffix=".png") as temp:
            figure.savefig(temp, dpi=80)
        plt.close(figure)
        paths.append(path)
    return paths


def check_size(size: Sequence[int], flag: str, model) -> tuple[int, int]:
    """(height, width) from a flag value, checked against the model's smallest input."""
    if len(size) != 2 or any(int(n) <= 0 for n in size):
        raise ValueError(f"{flag} must be two positive integers H,W, got {list(size)}.")
    height, width = (int(n) for n in size)
    min_height, min_width = model.min_input_size()
    if height < min_height or width < min_width:
        raise ValueError(
            f"{flag} {height},{width} is smaller than the smallest input this model accepts "
            f"({min_height},{min_width}); use a larger size."
        )
    return height, width


def measure_latency(model, input_size: Sequence[int], runs: int) -> latency.LatencyStats:
    """Times one batch-1 float32 forward pass of ``model`` on the CPU (see the module docstring).

    Args:
      model: a built ICNet or PSPNet.
      input_size: (height, width) of the image.
      runs: timed runs after ``LATENCY_WARMUP`` untimed ones (the first one traces).

    Returns:
      The :class:`core.analysis.latency.LatencyStats` of the timed runs.
    """
    return latency.measure(forward_call(model, input_size), warmup=LATENCY_WARMUP, runs=runs)


def measure_latencies(
    models: dict, input_size: Sequence[int], runs: int
) -> dict[str, latency.LatencyStats]:
    """Times several models' batch-1 forward passes round-robin (name -> stats).

    Each round runs every model once, in a rotated order, so a burst of load from other
    processes lands on all of them alike (:func:`core.analysis.latency.measure_interleaved`).
    """
    calls = {name: forward_call(model, input_size) for name, model in models.items()}
    return latency.measure_interleaved(calls, warmup=LATENCY_WARMUP, runs=runs)


def forward_call(model, input_size: Sequence[int]):
    """A callable running one traced batch-1 forward pass of ``model`` to completion.

    Tracing happens at its first call (a second or two for ICNet), so a caller that times the
    same model again and again (the full model a latency search compares with) keeps the
    callable rather than asking for a new one.
    """
    height, width = input_size
    signature = [tf.TensorSpec([1, height, width, 3], tf.float32)]

    @tf.function(input_signature=signature)
    def forward(images):
        with tf.device("/CPU:0"):
            return model.predict(model.preprocess(images), training=False)["logits"]

    images = tf.random.stateless_uniform([1, height, width, 3], (0, 1), 0.0, 255.0)
    return lambda: forward(images).numpy()


def latency_report(model, pruned, size: tuple[int, int], runs: int) -> dict:
    """Latency of the original and the pruned model, as summary entries (and a log line).

    The two are timed round-robin (:func:`core.analysis.latency.measure_interleaved`), so
    that load from other processes cannot make the pruned model look slower than its parent.
    """
    stats = measure_latencies({"before": model, "after": pruned}, size, runs)
    before, after = stats["before"], stats["after"]
    report = {
        "latency_input_size": list(size),
        "latency_runs": runs,
        "latency_before_ms": before.median_ms,
        "latency_after_ms": after.median_ms,
        "speedup": before.median_ms / after.median_ms,
        "threads": before.threads,
    }
    logging.info(
        "CPU latency at %dx%d (batch 1, float32, %d threads): %s -> %s (%.2fx)",
        size[0],
        size[1],
        before.threads,
        before.describe(),
        after.describe(),
        report["speedup"],
    )
    return report


def transfer_tensors(pruned, result: PruneResult) -> None:
    """Assigns the pruned tensors to the variables of ``pruned`` (built with the new widths).

    Raises:
      RuntimeError: a variable of ``pruned`` has no pruned tensor.
      CheckpointError: a tensor's shape does not fit its variable.
    """
    variables = checkpoint_utils.ensure_named_variables(pruned)
    missing = sorted(set(variables) - set(result.tensors))
    if missing:
        raise RuntimeError(f"pruned tensors lack model variables: {missing[:5]}")
    checkpoint_utils.assign_named_tensors(variables, result.tensors, "the pruned tensors")


def size_summary(model, pruned, flops_input_size: Sequence[int] | None) -> dict:
    """Parameters (and FLOPs at ``flops_input_size`` unless None) before and after; logged."""
    summary = {
        "params_before": model.count_parameters(),
        "params_after": pruned.count_parameters(),
    }
    if flops_input_size:
        before = flops.compute_flops(model, flops_input_size)
        after = flops.compute_flops(pruned, flops_input_size)
        summary["flops_input_size"] = list(flops_input_size)
        summary["gflops_before"] = before.gflops
        summary["gflops_after"] = after.gflops
    logging.info(
        "Parameters %d -> %d%s",
        summary["params_before"],
        summary["params_after"],
        f"; GFLOPs {summary['gflops_before']:.2f} -> {summary['gflops_after']:.2f}"
        if flops_input_size
        else "",
    )
    return summary


def write_summary(summary: dict, output_dir: str) -> str:
    """Writes ``compression_summary.json``; returns its path."""
    path = os.path.join(output_dir, SUMMARY_NAME)
    file_utils.atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    return path
