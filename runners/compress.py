"""What ``compress.py`` runs: prune a trained checkpoint, write the slimmer model and its config.

Config in, files out (see :mod:`core.pruning.compression` for the files): loads the pipeline
config (and the optional ``.prune_config``), restores the model, prunes it with the pruner the
prune config and flags describe, recalibrates the pruned model's batch norm over training
batches (on by default when the config has training records: the moving statistics sliced from
the unpruned model no longer describe the pruned network, see docs/compression.md), writes a
``pipeline.config`` that builds the pruned model directly, and saves the pruned model, its
summary and plots.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import logging

from builders import compressor_builder, config_util, model_builder
from core.checkpoints import checkpoint_utils
from core.pruning import compression
from core.pruning.compression import CompressionOutput
from runners import compress_latency, recalibrate
from runners.common import build_model


def pruned_model_config(pipeline, widths: dict[str, int], factor: float):
    """A copy of the pipeline config whose model builds with exactly ``widths``.

    Tries ``filter_scale * factor`` first (the uniform case); otherwise keeps the filter_scale
    and lists the smallest set of ``layer_widths`` that gives ``widths``.

    Args:
      pipeline: the ``PipelineConfig`` of the unpruned model.
      widths: conv scope -> output filters of the pruned model (``PruneResult.layer_widths``).
      factor: the compression factor used.

    Raises:
      RuntimeError: the widths cannot be expressed as ``layer_widths`` (a model bug).
    """
    candidate = type(pipeline)()
    candidate.CopyFrom(pipeline)
    _, model_config = model_builder.model_config(candidate)
    model_config.ClearField("layer_widths")
    original_scale = model_config.filter_scale
    model_config.filter_scale = original_scale * factor
    try:
        if compression.conv_widths(model_builder.build(candidate.model)) == widths:
            return candidate
    except ValueError as error:  # e.g. a rounding rule that cannot give these widths
        logging.info("Uniform filter_scale does not fit the pruned widths: %s", error)
    model_config.filter_scale = original_scale
    chosen: dict[str, int] = {}
    for _ in range(len(widths) + 1):  # each round fixes at least one width
        model_config.ClearField("layer_widths")
        for scope, filters in sorted(chosen.items()):
            model_config.layer_widths.add(scope=scope, filters=filters)
        built = compression.conv_widths(model_builder.build(candidate.model))
        wrong = {s: w for s, w in widths.items() if built.get(s) != w}
        if not wrong:
            return candidate
        chosen.update(wrong)
    raise RuntimeError("could not express the pruned widths as layer_widths.")


def compress(
    *,
    config_path: str,
    input_checkpoint: str,
    output_dir: str,
    compression_factor: float | None = None,
    prune_config_path: str | None = None,
    skippable_nodes: Sequence[str] = (),
    soft_apply: bool = False,
    interactive: bool = False,
    flops_input_size: Sequence[int] | None = (1025, 2049),
    latency_input_size: Sequence[int] | None = None,
    latency_runs: int = 3,
    recalibrate_bn_batches: int | None = None,
    search: compress_latency.SearchOptions | None = None,
) -> CompressionOutput:
    """Prunes ``input_checkpoint`` (a model of ``config_path``) and writes the results.

    Args:
      config_path: pipeline config the checkpoint was trained with.
      input_checkpoint: checkpoint prefix or training directory.
      output_dir: folder for the files listed in :mod:`core.pruning.compression`.
      compression_factor: fraction of filters kept, in (0, 1]; None: 0.5 (or, with a latency
        target in ``search``, the search picks the widths).
      prune_config_path: optional ``.prune_config``: skip_node entries, and node specs whose
        ``source`` ties two convs' masks (see ``builders/compressor_builder.py``).
      skippable_nodes: extra node names / conv scopes never pruned.
      soft_apply: zero pruned channels and keep the shapes (and the config).
      interactive: also write the L1-norm plots.
      flops_input_size: (height, width) for the FLOPs count, or None to skip it.
      latency_input_size: (height, width) for the CPU latency of both models, or None to skip
        it (also skipped with ``soft_apply``).
      latency_runs: timed forward passes per model.
      recalibrate_bn_batches: training batches (``train_config.batch_size`` images, seeded)
        over which the pruned model's batch-norm moving statistics are recomputed; None:
        ``runners.recalibrate.DEFAULT_NUM_BATCHES`` when the config's train_input_reader
        names existing records, else skipped with a log line; 0: off. The summary's
        ``bn_recalibration`` says whether it ran and over how many images.
      search: with ``target_latency_ms`` or ``target_speedup`` set, prune to that latency at
        ``latency_input_size`` instead of by one factor (``runners/compress_latency.py``); the
        summary's ``latency_search`` and the files it lists hold the result.

    Raises:
      ConfigError, CheckpointError, ValueError: with the file, flag or layer named.
    """
    search = search or compress_latency.SearchOptions()
    targeted = compress_latency.check_targets(
        search.target_latency_ms,
        search.target_speedup,
        compression_factor,
        soft_apply,
        latency_input_size,
    )
    if compression_factor is None:
        compression_factor = 1.0 if targeted else 0.5
    pipeline = config_util.load_pipeline_config(config_path)
    flag = "--recalibrate_bn_batches"
    num_batches, why_not = recalibrate.resolve_num_batches(pipeline, recalibrate_bn_batches, flag)
    prune_config = config_util.load_prune_config(prune_config_path) if prune_config_path else None
    model = build_model(pipeline, build_variables=False)
    if latency_input_size and not soft_apply:
        latency_size = compression.check_size(latency_input_size, "--latency_input_size", model)
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
    if targeted:
        searched = compress_latency.search_prune(model, pipeline, pruner, latency_size, search)
        result = searched.prune
    else:
        result = pruner.prune(model)
    if soft_apply:
        new_pipeline = pipeline
    else:
        new_pipeline = pruned_model_config(pipeline, result.layer_widths, compression_factor)
    pruned = build_model(new_pipeline, build_variables=False)
    compression.transfer_tensors(pruned, result)
    recalibration = _recalibrate(pruned, new_pipeline, num_batches, why_not)
    checkpoint = compression.save_checkpoint(pruned, output_dir)
    config_path_out = config_util.write_pipeline_config(new_pipeline, output_dir)
    _, model_config = model_builder.model_config(new_pipeline)
    summary = {
        "compression_factor": None if targeted else compression_factor,
        "soft_apply": soft_apply,
        "groups_pruned": len(result.masks),
        "groups_total": len(result.graph.groups),
    }
    sizes = compression.size_summary(model, pruned, flops_input_size)
    summary.update(params_before=sizes.pop("params_before"), params_after=sizes.pop("params_after"))
    summary["filter_scale"] = model_config.filter_scale
    summary["layer_widths"] = {entry.scope: entry.filters for entry in model_config.layer_widths}
    summary.update(sizes)
    summary["bn_recalibration"] = recalibration
    if targeted:
        summary.update(compress_latency.report(searched, pruned, latency_size, output_dir))
    elif latency_size:
        summary.update(compression.latency_report(model, pruned, latency_size, latency_runs))
    elif latency_input_size:
        logging.info("--soft_apply keeps every shape: latency before and after is the same.")
    if interactive:
        summary["plots"] = compression.plot_l1_norms(result, output_dir)
    compression.write_summary(summary, output_dir)
    return CompressionOutput(checkpoint, config_path_out, summary)


def _recalibrate(pruned, pipeline, num_batches: int, why_not: str) -> dict:
    """Recalibrates the pruned model's batch norm unless ``num_batches`` is 0; the summary entry."""
    if not num_batches:
        logging.info("Batch norm of the pruned model is not recalibrated: %s.", why_not)
        return {"ran": False, "num_batches": 0, "num_images": 0, "reason": why_not}
    images = recalibrate.make_recalibrator(pruned, pipeline, num_batches)()
    logging.info(
        "Recalibrated the pruned model's batch norm on %d training images (%d batches).",
        images,
        num_batches,
    )
    return {"ran": True, "num_batches": num_batches, "num_images": images, "reason": ""}
