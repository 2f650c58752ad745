"""Compresses a trained ICNet / PSPNet by L1 filter pruning (Li et al. 2017), as the original.

Example (ICNet 1.0 -> 0.5, then retrain with the written config):
  python compress.py --config_path configs/two_stage_icnet_1.0_1025_resnet_v1_stage_1.config \
      --input_checkpoint train_dir/model.ckpt-100000 --compression_factor 0.5 \
      --prune_config configs/compression/icnet_resnet_v1_pruner.prune_config \
      --output_dir pruned

Writes pruned/pruned_model.ckpt and pruned/pipeline.config (filter_scale 0.5 here, or per-conv
layer_widths for uneven pruning); see runners/compress.py. Channel dependencies (residual
adds, CFF sums, the PSP concat) are declared by the model itself, so --prune_config is
optional: its skip_node entries skip convs, and its node specs add ties (source) and checks
(following) on top of the automatic plan. --latency_input_size 1024,2048 adds the measured CPU
latency of both models to compression_summary.json. The pruned model's batch-norm statistics
are recalibrated over 50 training batches when the config's train_input_reader names existing
records (--recalibrate_bn_batches N sets the count, 0 turns it off).

Latency target (instead of --compression_factor): --target_latency_ms 50 (or --target_speedup 2)
with --latency_input_size 1024,2048 times the model's layers on this machine (cached under
--latency_table_dir), then greedily narrows one unit per step (NetAdapt), each candidate scored
by mIoU on --search_eval_batches eval batches after recalibrating batch norm on
--search_recalibrate_batches training batches; see runners/compress_latency.py. The latency
predictions are calibrated end to end by default (--latency_model calibrated: the model timed
with each block narrowed to --latency_calibration_grid, cached with the tables).
"""

from __future__ import annotations

from absl import flags

from runners import cli

flags.DEFINE_string("input_checkpoint", None, "Checkpoint prefix or training directory to prune.")
flags.DEFINE_string("config_path", None, "Pipeline .config the checkpoint was trained with.")
flags.DEFINE_string(
    "prune_config",
    None,
    "Optional .prune_config (the original's schema): skip_node entries, and node specs that tie "
    "a target's keep-mask to its source's.",
)
flags.DEFINE_float(
    "compression_factor", 0.5, "Fraction of filters KEPT in every pruned conv, in (0, 1]."
)
flags.DEFINE_string("output_dir", None, "Directory for pruned_model.ckpt and pipeline.config.")
flags.DEFINE_list(
    "skippable_nodes", [], "Comma list of convs never pruned (scopes or original node names)."
)
flags.DEFINE_bool("interactive", False, "Write a PNG per layer of its sorted L1 norms.")
flags.DEFINE_bool("soft_apply", False, "Zero the pruned channels instead of removing them.")
flags.DEFINE_list(
    "flops_input_size", ["1025", "2049"], "H,W for the FLOPs count; empty to skip it."
)
flags.DEFINE_list(
    "latency_input_size",
    [],
    "H,W (e.g. 1024,2048) to measure batch-1 CPU latency before and after; empty to skip it.",
)
flags.DEFINE_integer("latency_runs", 3, "Timed forward passes per model for the latency.")
flags.DEFINE_integer(
    "recalibrate_bn_batches",
    None,
    "Training batches over which the pruned model's batch-norm moving statistics are "
    "recomputed (weights frozen, seeded). Default: 50 when the config's train_input_reader "
    "names existing records, else skipped; 0: off.",
)
flags.DEFINE_float(
    "target_latency_ms",
    None,
    "Prune until the predicted batch-1 CPU latency at --latency_input_size is at most this "
    "(instead of --compression_factor).",
)
flags.DEFINE_float(
    "target_speedup",
    None,
    "Prune until the predicted latency is the unpruned model's divided by this (> 1).",
)
flags.DEFINE_integer("search_steps", 5, "Greedy steps the latency cut is spread over.")
flags.DEFINE_integer("search_eval_batches", 10, "Eval images each search candidate is scored on.")
flags.DEFINE_integer(
    "search_recalibrate_batches",
    5,
    "Training batches each candidate's batch norm is recalibrated on before scoring (0: off).",
)
flags.DEFINE_enum(
    "search_granularity", "group", ["group", "block"], "Search unit: channel group or block."
)
flags.DEFINE_integer(
    "search_width_multiple", 1, "Searched widths are multiples of this (or the full width)."
)
flags.DEFINE_string(
    "latency_table_dir",
    "~/.cache/fast_semantic_segmentation/latency",
    "Folder caching the measured per-layer latency tables (keyed by model, size and machine).",
)
flags.DEFINE_list(
    "latency_grid",
    ["1", "0.75", "0.5", "0.25", "0.125"],
    "Kept-width fractions each layer is timed at for the latency table.",
)
flags.DEFINE_enum(
    "latency_statistic",
    "median",
    ["median", "min"],
    "Statistic of the timed runs for the latency target (min is steadier on a busy machine).",
)
flags.DEFINE_enum(
    "latency_model",
    "calibrated",
    ["calibrated", "layers"],
    "Latency predictions of the search: per-layer tables corrected by end-to-end timings of "
    "the model with each block narrowed (calibrated, cached; about blocks x grid + 2 timings) "
    "or the per-layer tables alone (layers).",
)
flags.DEFINE_list(
    "latency_calibration_grid",
    ["0.75", "0.5", "0.25"],
    "Keep ratios each block (or group) is narrowed to for the end-to-end calibration.",
)
flags.DEFINE_enum(
    "latency_calibration_granularity",
    "block",
    ["block", "group"],
    "Calibration parts: the model's blocks, or every channel group (many more timings).",
)
flags.mark_flags_as_required(["input_checkpoint", "config_path", "output_dir"])
FLAGS = flags.FLAGS


def _size(flag: str) -> list[int] | None:
    """A comma list flag of integers, or None when empty."""
    values = FLAGS[flag].value
    try:
        return [int(n) for n in values] or None
    except ValueError:
        raise ValueError(f"--{flag} must be integers H,W, got {','.join(values)}.") from None


def _ratios(flag: str = "latency_grid", allow_full: bool = True) -> tuple[float, ...]:
    """A grid flag as fractions in (0, 1], or in (0, 1) without ``allow_full``."""
    values = FLAGS[flag].value
    try:
        ratios = tuple(float(r) for r in values)
    except ValueError:
        ratios = ()
    if not ratios or not all(0 < r < 1 or (allow_full and r == 1) for r in ratios):
        raise ValueError(
            f"--{flag} must be fractions in {'(0, 1]' if allow_full else '(0, 1)'} such as "
            f"0.75,0.5,0.25, got {','.join(values)}."
        )
    return ratios


def main(argv: list[str]) -> None:
    del argv
    flops_input_size = _size("flops_input_size")
    latency_input_size = _size("latency_input_size")
    from runners import compress as compression  # noqa: PLC0415 - after flag checks
    from runners.compress_latency import SearchOptions  # noqa: PLC0415

    # The factor has a default; only an explicit one conflicts with a latency target.
    factor = FLAGS.compression_factor
    if FLAGS.target_latency_ms is not None or FLAGS.target_speedup is not None:
        factor = factor if FLAGS["compression_factor"].present else None
    search = SearchOptions(
        target_latency_ms=FLAGS.target_latency_ms,
        target_speedup=FLAGS.target_speedup,
        steps=FLAGS.search_steps,
        eval_batches=FLAGS.search_eval_batches,
        recalibrate_batches=FLAGS.search_recalibrate_batches,
        granularity=FLAGS.search_granularity,
        width_multiple=FLAGS.search_width_multiple,
        table_dir=FLAGS.latency_table_dir or None,
        statistic=FLAGS.latency_statistic,
        timing_runs=FLAGS.latency_runs,
        ratios=_ratios(),
        latency_model=FLAGS.latency_model,
        calibration_ratios=_ratios("latency_calibration_grid", allow_full=False),
        calibration_granularity=FLAGS.latency_calibration_granularity,
    )

    result = compression.compress(
        config_path=FLAGS.config_path,
        input_checkpoint=FLAGS.input_checkpoint,
        output_dir=FLAGS.output_dir,
        compression_factor=factor,
        prune_config_path=FLAGS.prune_config,
        skippable_nodes=FLAGS.skippable_nodes,
        soft_apply=FLAGS.soft_apply,
        interactive=FLAGS.interactive,
        flops_input_size=flops_input_size,
        latency_input_size=latency_input_size,
        latency_runs=FLAGS.latency_runs,
        recalibrate_bn_batches=FLAGS.recalibrate_bn_batches,
        search=search,
    )
    summary = result.summary
    if "latency_search" in summary:
        found = summary["latency_search"]
        print(
            f"Latency target {found['target_ms']:.2f} ms: predicted {found['predicted_ms']:.2f} "
            f"ms, measured {found['measured_ms']:.2f} ms (unpruned {found['unpruned_ms']:.2f} "
            f"ms); widths in {found['files']['widths']}"
        )
    latency = (
        f"; CPU latency {summary['latency_before_ms']:.1f} -> {summary['latency_after_ms']:.1f} ms"
        if "latency_before_ms" in summary
        else ""
    )
    recalibration = summary["bn_recalibration"]
    batch_norm = (
        f"; batch norm recalibrated on {recalibration['num_images']} images"
        if recalibration["ran"]
        else f"; batch norm not recalibrated ({recalibration['reason']})"
    )
    print(
        f"Pruned checkpoint: {result.checkpoint}; config: {result.pipeline_config}; "
        f"parameters {summary['params_before']} -> {summary['params_after']}{latency}{batch_norm}"
    )


if __name__ == "__main__":
    cli.run_main(main, extra_errors=(ValueError,))  # its ValueErrors name the bad value
