"""Compresses a trained ICNet / PSPNet by L1 filter pruning (Li et al. 2017), as the original.

Example (ICNet 1.0 -> 0.5, then retrain with the written config):
  python compress.py --config_path configs/icnet_resnet_v1_1.0_cityscapes.config \
      --input_checkpoint train_dir/model.ckpt-100000 --compression_factor 0.5 \
      --prune_config configs/compression/icnet_resnet_v1_pruner.prune_config \
      --output_dir pruned

Writes pruned/pruned_model.ckpt and pruned/pipeline.config (filter_scale 0.5 here, or per-conv
layer_widths for uneven pruning); see core/pruning/compression.py. Channel dependencies
(residual adds, CFF sums, the PSP concat) are found from the model, so --prune_config is
optional and only its skip_node entries matter.
"""

from __future__ import annotations

import sys

from absl import app, flags

from builders.config_util import ConfigError
from core.checkpoint_utils import CheckpointError
from core.pruning import compression

flags.DEFINE_string("input_checkpoint", None, "Checkpoint prefix or training directory to prune.")
flags.DEFINE_string("config_path", None, "Pipeline .config the checkpoint was trained with.")
flags.DEFINE_string(
    "prune_config", None, "Optional .prune_config (the original's); skip_node entries are used."
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
flags.mark_flags_as_required(["input_checkpoint", "config_path", "output_dir"])
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    size = [int(n) for n in FLAGS.flops_input_size] or None
    try:
        result = compression.compress(
            config_path=FLAGS.config_path,
            input_checkpoint=FLAGS.input_checkpoint,
            output_dir=FLAGS.output_dir,
            compression_factor=FLAGS.compression_factor,
            prune_config_path=FLAGS.prune_config,
            skippable_nodes=FLAGS.skippable_nodes,
            soft_apply=FLAGS.soft_apply,
            interactive=FLAGS.interactive,
            flops_input_size=size,
        )
    except (ConfigError, CheckpointError, ValueError) as error:
        sys.exit(f"error: {error}")
    summary = result.summary
    print(
        f"Pruned checkpoint: {result.checkpoint}; config: {result.pipeline_config}; "
        f"parameters {summary['params_before']} -> {summary['params_after']}"
    )


if __name__ == "__main__":
    app.run(main)
