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
flags.mark_flags_as_required(["input_checkpoint", "config_path", "output_dir"])
FLAGS = flags.FLAGS


def _size(flag: str) -> list[int] | None:
    """A comma list flag of integers, or None when empty."""
    values = FLAGS[flag].value
    try:
        return [int(n) for n in values] or None
    except ValueError:
        raise ValueError(f"--{flag} must be integers H,W, got {','.join(values)}.") from None


def main(argv: list[str]) -> None:
    del argv
    flops_input_size = _size("flops_input_size")
    latency_input_size = _size("latency_input_size")
    from runners import compress as compression  # noqa: PLC0415 - after flag checks

    result = compression.compress(
        config_path=FLAGS.config_path,
        input_checkpoint=FLAGS.input_checkpoint,
        output_dir=FLAGS.output_dir,
        compression_factor=FLAGS.compression_factor,
        prune_config_path=FLAGS.prune_config,
        skippable_nodes=FLAGS.skippable_nodes,
        soft_apply=FLAGS.soft_apply,
        interactive=FLAGS.interactive,
        flops_input_size=flops_input_size,
        latency_input_size=latency_input_size,
        latency_runs=FLAGS.latency_runs,
        recalibrate_bn_batches=FLAGS.recalibrate_bn_batches,
    )
    summary = result.summary
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
