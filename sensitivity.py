"""Pruning sensitivity analysis: prune each block (or channel group) alone, measure the mIoU.

Example (ICNet, every backbone block / ICNet branch / head at three keep ratios, 100 images):
  python sensitivity.py \
      --config_path configs/two_stage_icnet_1.0_1025_resnet_v1_stage_1.config \
      --input_checkpoint train_dir --output_dir sensitivity \
      --ratios 0.75,0.5,0.25 --granularity block --num_examples 100

Each unit is soft-pruned alone as compress.py would prune it (L1 ranking, the pruned channels
zeroed in place and restored afterwards) and scored on the eval record of the config. Writes
sensitivity.json, sensitivity.md (one row per unit), sensitivity.csv and sensitivity.png into
--output_dir; see runners/sensitivity.py, core/pruning/sensitivity.py and docs/compression.md.
"""

from __future__ import annotations

from absl import flags, logging

from runners import cli

# core.pruning.sensitivity.GRANULARITIES, written out so that a flag mistake is reported before
# the TensorFlow import (tests/test_bad_inputs.py checks that they agree).
GRANULARITIES = ("block", "group")

flags.DEFINE_string("config_path", None, "Pipeline .config of the checkpoint (eval data too).")
flags.DEFINE_string("input_checkpoint", None, "Checkpoint prefix or training directory.")
flags.DEFINE_string("output_dir", None, "Directory for sensitivity.{json,md,csv,png}.")
flags.DEFINE_list(
    "ratios", ["0.75", "0.5", "0.25"], "Keep ratios in (0, 1]: fraction of filters KEPT."
)
flags.DEFINE_enum(
    "granularity",
    "block",
    list(GRANULARITIES),
    "block: backbone blocks / ICNet branches / heads; group: every channel group alone.",
)
flags.DEFINE_integer(
    "num_examples", None, "Images scored per measurement (default: eval_config.num_examples)."
)
flags.DEFINE_list(
    "skippable_nodes", [], "Comma list of convs never pruned (scopes or original node names)."
)
flags.DEFINE_integer(
    "recalibrate_bn_batches",
    0,
    "Recalibrate batch norm over N seeded training batches of the config before scoring the "
    "baseline and every pruned candidate ('adaptive BN'); 0 (default): off.",
)
flags.mark_flags_as_required(["config_path", "input_checkpoint", "output_dir"])
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.INFO)
    from runners import sensitivity as sensitivity_runner  # noqa: PLC0415 - after flag checks

    result, paths = sensitivity_runner.run(
        config_path=FLAGS.config_path,
        input_checkpoint=FLAGS.input_checkpoint,
        output_dir=FLAGS.output_dir,
        ratios=FLAGS.ratios,
        granularity=FLAGS.granularity,
        num_examples=FLAGS.num_examples,
        skippable_nodes=FLAGS.skippable_nodes,
        recalibrate_bn_batches=FLAGS.recalibrate_bn_batches,
    )
    print(
        f"Baseline mIoU {100 * result.baseline_miou:.2f}% on {result.num_images} images; "
        f"{len(result.units)} units. Table: {paths['md']}; plot: {paths['png']}"
    )


if __name__ == "__main__":
    # Its ValueErrors name the bad value; a bad eval record is one line, before TensorFlow.
    cli.run_main(main, extra_errors=(ValueError,), check_records=("eval_input_reader",))
