#!/usr/bin/env bash
# Batch-norm recalibration on the two-stage recipe (examples/two_stage_synthetic.sh), shortened
# for a CPU: the PSPNet stage and the pruned ICNet before fine-tuning, each scored three ways
# (docs/training.md and docs/compression.md hold the measured table):
#
#   moving       eval-mode batch norm with the checkpoint's moving averages (what eval.py does)
#   recalibrated moving statistics recomputed over --num_batches training batches first
#                (core.training.recalibration, the step of train.py --recalibrate_bn_batches,
#                compress.py and recalibrate_bn.py)
#   batch        each image normalised by its own batch statistics (training-mode batch norm)
#
#   data       400 training and 50 validation synthetic 256x512 scenes
#   pspnet     PSPNet50 0.5 from scratch, --pspnet_steps                  train.py
#   stage 1    ICNet 0.5 from the PSPNet backbone, --stage1_steps          train.py
#   compress   ICNet 0.5 -> 0.25, without recalibration                    compress.py
#   compress+  the same with compress.py's default recalibration, scored by eval.py
#   measure    both models three ways                     examples/bn_statistics_eval.py
#
# Running it again resumes: records are kept and train.py stops at the last checkpoint.
# Everything lands under --output (default bn_recalibration_output/); measure.json and
# summary.md hold the numbers, stage_seconds.txt the wall times.
#
# Usage: examples/bn_recalibration_synthetic.sh [--output DIR] [--pspnet_steps N]
#            [--stage1_steps N] [--num_batches N] [--seed N]
# The Python interpreter is $PYTHON, else .venv/bin/python when it exists, else python.

set -euo pipefail

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

OUTPUT="bn_recalibration_output"
PSPNET_STEPS=100
STAGE1_STEPS=200
NUM_BATCHES=50
SEED=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pspnet_steps) PSPNET_STEPS="${2:?$1 needs a value}"; shift 2 ;;
    --stage1_steps) STAGE1_STEPS="${2:?$1 needs a value}"; shift 2 ;;
    --num_batches) NUM_BATCHES="${2:?$1 needs a value}"; shift 2 ;;
    *) common_arg "$@"; shift "$COMMON_SHIFT" ;;  # --output, --seed, --help, errors
  esac
done
require_positive "steps and --num_batches" "$PSPNET_STEPS" "$STAGE1_STEPS" "$NUM_BATCHES"
require_seed "$SEED"

enter_repo "${BASH_SOURCE[0]}"

CONFIGS=configs/two_stage_synthetic
DATA="$OUTPUT/data"
TIMES="$OUTPUT/stage_seconds.txt"
mkdir -p "$OUTPUT"
touch "$TIMES"

if [[ -f "$DATA/synthetic_train.record" && -f "$DATA/synthetic_val.record" ]]; then
  echo "==== data: keeping the records in $DATA"
else
  run_stage data "$PYTHON" dataset_tools/create_synthetic_dataset.py --output_dir "$DATA" \
    --num_train 400 --num_val 50 --height 256 --width 512 --seed "$SEED"
fi

run_stage pspnet_train "$PYTHON" train.py --config_path "$CONFIGS/pspnet_0.5_synthetic_stage_0.config" \
  --logdir "$OUTPUT/pspnet/train" --seed "$SEED" \
  --config_override "$(data_override)" --config_override "$(steps_override "$PSPNET_STEPS")"

run_stage stage1_train "$PYTHON" train.py --config_path "$CONFIGS/icnet_0.5_synthetic_stage_1.config" \
  --logdir "$OUTPUT/icnet_stage_1/train" --seed "$SEED" \
  --config_override "$(data_override)" --config_override "$(steps_override "$STAGE1_STEPS")" \
  --config_override "train_config { fine_tune_checkpoint: \"$OUTPUT/pspnet/train/model.ckpt-$PSPNET_STEPS\" fine_tune_checkpoint_type: \"segmentation\" }"

STAGE1_CHECKPOINT="$OUTPUT/icnet_stage_1/train/model.ckpt-$STAGE1_STEPS"
run_stage compress "$PYTHON" compress.py --input_checkpoint "$STAGE1_CHECKPOINT" \
  --config_path "$OUTPUT/icnet_stage_1/train/pipeline.config" --compression_factor 0.5 \
  --output_dir "$OUTPUT/icnet_pruned" --recalibrate_bn_batches 0
run_stage compress_recalibrated "$PYTHON" compress.py --input_checkpoint "$STAGE1_CHECKPOINT" \
  --config_path "$OUTPUT/icnet_stage_1/train/pipeline.config" --compression_factor 0.5 \
  --output_dir "$OUTPUT/icnet_pruned_recalibrated" --recalibrate_bn_batches "$NUM_BATCHES"
run_stage compress_recalibrated_eval "$PYTHON" eval.py \
  --config_path "$OUTPUT/icnet_pruned_recalibrated/pipeline.config" \
  --train_dir "$OUTPUT/icnet_pruned_recalibrated" \
  --evaluate_all_from_checkpoint pruned_model.ckpt \
  --eval_dir "$OUTPUT/icnet_pruned_recalibrated/eval"

run_stage measure "$PYTHON" examples/bn_statistics_eval.py --num_batches "$NUM_BATCHES" \
  --seed "$SEED" --output "$OUTPUT/measure.json" \
  --model "pspnet_${PSPNET_STEPS}_steps=$OUTPUT/pspnet/train/pipeline.config:$OUTPUT/pspnet/train/model.ckpt-$PSPNET_STEPS" \
  --model "icnet_pruned=$OUTPUT/icnet_pruned/pipeline.config:$OUTPUT/icnet_pruned/pruned_model.ckpt"

"$PYTHON" - "$OUTPUT" <<'PY'
import json
import os
import sys

out = sys.argv[1]
with open(os.path.join(out, "measure.json")) as handle:
    measured = json.load(handle)
with open(os.path.join(out, "icnet_pruned_recalibrated", "eval", "metrics_latest.json")) as handle:
    compress_default = json.load(handle)["miou"]
lines = [
    "| model | moving stats | recalibrated | batch stats | recalibration images / s |",
    "|---|---|---|---|---|",
]
for name, row in measured["models"].items():
    lines.append(
        f"| {name} | {100 * row['moving']:.1f} | {100 * row['recalibrated']:.1f} | "
        f"{100 * row['batch']:.1f} | {row['recalibration_images']} / "
        f"{row['recalibration_seconds']:.0f} |"
    )
lines.append("")
lines.append(f"compress.py with its recalibration, scored by eval.py: {100 * compress_default:.1f}")
text = "\n".join(lines) + "\n"
with open(os.path.join(out, "summary.md"), "w") as handle:
    handle.write(text)
print(text, end="")
PY
