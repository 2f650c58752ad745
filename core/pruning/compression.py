"""compress.py's library call: prune a trained checkpoint, write the slimmer model and its config.

Writes into ``output_dir``:
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
import shutil
import tempfile
from collections.abc import Sequence

import tensorflow as tf
from absl import logging

from builders import compressor_builder, config_util, model_builder
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


def _conv_widths(model) -> dict[str, int]:
    """Output filters of every non-depthwise, non-prediction conv of a (constructed) model."""
    prediction = {model.predictions.scope, *model.aux_scopes()}
    return {
        scope: layer.filters
        for scope, layer in model.named_layers().items()
        if scope not in prediction and not getattr(layer, "depthwise", False)
    }


def pruned_model_config(pipeline, widths: dict[str, int], factor: float):
    """A copy of the pipeline config whose model builds with exactly ``widths``.

    Tries ``filter_scale * factor`` first (the issue's uniform case); otherwise keeps the
    filter_scale and lists the smallest set of ``layer_widths`` that gives ``widths``.
    """
    kind = pipeline.model.WhichOneof("model")
    candidate = type(pipeline)()
    candidate.CopyFrom(pipeline)
    model_config = getattr(candidate.model, kind)
    model_config.ClearField("layer_widths")
    original_scale = model_config.filter_scale
    model_config.filter_scale = original_scale * factor
    try:
        if _conv_widths(model_builder.build(candidate.model)) == widths:
            return candidate
    except ValueError as error:  # e.g. a rounding rule that cannot give these widths
        logging.info("Uniform filter_scale does not fit the pruned widths: %s", error)
    model_config.filter_scale = original_scale
    chosen: dict[str, int] = {}
    for _ in range(len(widths) + 1):  # each round fixes at least one width
        model_config.ClearField("layer_widths")
        for scope, filters in sorted(chosen.items()):
            model_config.layer_widths.add(scope=scope, filters=filters)
        built = _conv_widths(model_builder.build(candidate.model))
        wrong = {s: w for s, w in widths.items() if built.get(s) != w}
        if not wrong:
            return candidate
        chosen.update(wrong)
    raise RuntimeError("could not express the pruned widths as layer_widths.")


def _save_checkpoint(model, output_dir: str) -> str:
    """Writes ``<output_dir>/pruned_model.ckpt`` via a temporary folder, then renames."""
    os.makedirs(output_dir, exist_ok=True)
    step = tf.Variable(0, dtype=tf.int64, name="global_step")
    checkpoint = checkpoint_utils.make_checkpoint(model, step=step)
    temp = tempfile.mkdtemp(dir=output_dir, prefix=".tmp-ckpt-")
    try:
        checkpoint.write(os.path.join(temp, CHECKPOINT_NAME))
        for name in os.listdir(temp):
            os.replace(os.path.join(temp, name), os.path.join(output_dir, name))
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    file_utils.atomic_write_text(
        os.path.join(output_dir, "checkpoint"),
        f'model_checkpoint_path: "{CHECKPOINT_NAME}"\n'
        f'all_model_checkpoint_paths: "{CHECKPOINT_NAME}"\n',
    )
    return os.path.join(output_dir, CHECKPOINT_NAME)


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


def _check_size(size: Sequence[int], flag: str, model) -> tuple[int, int]:
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
    height, width = input_size
    signature = [tf.TensorSpec([1, height, width, 3], tf.float32)]

    @tf.function(input_signature=signature)
    def forward(images):
        with tf.device("/CPU:0"):
            return model.predict(model.preprocess(images), training=False)["logits"]

    images = tf.random.stateless_uniform([1, height, width, 3], (0, 1), 0.0, 255.0)
    return latency.measure(lambda: forward(images).numpy(), warmup=LATENCY_WARMUP, runs=runs)


def _latency_report(model, pruned, size: tuple[int, int], runs: int) -> dict:
    """Latency of the original and the pruned model, as summary entries (and a log line)."""
    before = measure_latency(model, size, runs)
    after = measure_latency(pruned, size, runs)
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


def compress(
    *,
    config_path: str,
    input_checkpoint: str,
    output_dir: str,
    compression_factor: float = 0.5,
    prune_config_path: str | None = None,
    skippable_nodes: Sequence[str] = (),
    soft_apply: bool = False,
    interactive: bool = False,
    flops_input_size: Sequence[int] | None = (1025, 2049),
    latency_input_size: Sequence[int] | None = None,
    latency_runs: int = 3,
) -> CompressionOutput:
    """Prunes ``input_checkpoint`` (a model of ``config_path``) and writes the results.

    Args:
      config_path: pipeline config the checkpoint was trained with.
      input_checkpoint: checkpoint prefix or training directory.
      output_dir: folder for the files listed in the module docstring.
      compression_factor: fraction of filters kept, in (0, 1].
      prune_config_path: optional ``.prune_config``: skip_node entries, and node specs whose
        ``source`` ties two convs' masks (see ``builders/compressor_builder.py``).
      skippable_nodes: extra node names / conv scopes never pruned.
      soft_apply: zero pruned channels and keep the shapes (and the config).
      interactive: also write the L1-norm plots.
      flops_input_size: (height, width) for the FLOPs count, or None to skip it.
      latency_input_size: (height, width) for the CPU latency of both models, or None to skip
        it (also skipped with ``soft_apply``).
      latency_runs: timed forward passes per model.

    Raises:
      ConfigError, CheckpointError, ValueError: with the file, flag or layer named.
    """
    pipeline = config_util.load_pipeline_config(config_path)
    prune_config = config_util.load_prune_config(prune_config_path) if prune_config_path else None
    model = model_builder.build(pipeline.model)
    if latency_input_size and not soft_apply:
        latency_size = _check_size(latency_input_size, "--latency_input_size", model)
        if latency_runs < 1:
            raise ValueError(f"--latency_runs must be at least 1, got {latency_runs}.")
    else:
        latency_size = None
    checkpoint_utils.restore_model(model, input_checkpoint)
    pruner = compressor_builder.build(
        prune_config,
        compression_factor=compression_factor,
        known_scopes=set(model.named_layers()),
        skip_nodes=skippable_nodes,
        soft_apply=soft_apply,
        source=prune_config_path or "prune config",
    )
    result = pruner.prune(model)
    if soft_apply:
        new_pipeline = pipeline
    else:
        new_pipeline = pruned_model_config(pipeline, result.layer_widths, compression_factor)
    pruned = model_builder.build(new_pipeline.model)
    variables = checkpoint_utils.ensure_named_variables(pruned)
    missing = sorted(set(variables) - set(result.tensors))
    if missing:
        raise RuntimeError(f"pruned tensors lack model variables: {missing[:5]}")
    checkpoint_utils.assign_named_tensors(variables, result.tensors, "the pruned tensors")
    checkpoint = _save_checkpoint(pruned, output_dir)
    config_path_out = config_util.write_pipeline_config(new_pipeline, output_dir)
    summary = {
        "compression_factor": compression_factor,
        "soft_apply": soft_apply,
        "groups_pruned": len(result.masks),
        "groups_total": len(result.graph.groups),
        "params_before": model.count_parameters(),
        "params_after": pruned.count_parameters(),
    }
    kind = new_pipeline.model.WhichOneof("model")
    model_config = getattr(new_pipeline.model, kind)
    summary["filter_scale"] = model_config.filter_scale
    summary["layer_widths"] = {entry.scope: entry.filters for entry in model_config.layer_widths}
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
    if latency_size:
        summary.update(_latency_report(model, pruned, latency_size, latency_runs))
    elif latency_input_size:
        logging.info("--soft_apply keeps every shape: latency before and after is the same.")
    if interactive:
        summary["plots"] = plot_l1_norms(result, output_dir)
    file_utils.atomic_write_text(
        os.path.join(output_dir, SUMMARY_NAME), json.dumps(summary, indent=2) + "\n"
    )
    return CompressionOutput(checkpoint, config_path_out, summary)
