#!/usr/bin/env bash
# The two-stage ICNet recipe (docs/compression.md), small enough for a CPU, on the built-in
# synthetic street scenes:
#
#   stage 0  PSPNet50 (filter_scale 0.5) from scratch           train.py, eval.py
#   stage 1  ICNet 0.5, backbone initialised from the PSPNet    train.py, eval.py
#   compress ICNet 0.5 -> 0.25 by L1 filter pruning              compress.py, eval.py
#   stage 2  fine-tune the pruned ICNet 0.25                     train.py, eval.py
#
# With the default steps it took 44 minutes on a 2-core CPU shared with other jobs (roughly
# half that is expected on an idle one; the measured numbers are in docs/compression.md).
# Run from anywhere; paths, --output included, are relative to the repository root.
# Everything lands under --output (default two_stage_output/):
#
#   data/                  synthetic_{train,val}.record (256x512 scenes)
#   pspnet/{train,eval}/   stage 0 checkpoints and metrics_<step>.json
#   icnet_stage_1/{train,eval}/
#   icnet_pruned/          pruned_model.ckpt, pipeline.config, compression_summary.json, eval/
#   icnet_stage_2/{train,eval}/
#   summary.md             mIoU, parameters, FLOPs, latency and wall time of every stage
#
# Running it again resumes: existing records are kept and train.py continues from (or stops at)
# the last checkpoint of each stage.
#
# Usage: examples/two_stage_synthetic.sh [--output DIR] [--pspnet_steps N] [--stage1_steps N]
#            [--stage2_steps N] [--seed N]
# The Python interpreter is $PYTHON, else .venv/bin/python when it exists, else python.

set -euo pipefail

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

OUTPUT="two_stage_output"
PSPNET_STEPS=300
STAGE1_STEPS=800
STAGE2_STEPS=800
SEED=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pspnet_steps) PSPNET_STEPS="${2:?$1 needs a value}"; shift 2 ;;
    --stage1_steps) STAGE1_STEPS="${2:?$1 needs a value}"; shift 2 ;;
    --stage2_steps) STAGE2_STEPS="${2:?$1 needs a value}"; shift 2 ;;
    *) common_arg "$@"; shift "$COMMON_SHIFT" ;;  # --output, --seed, --help, errors
  esac
done
require_positive steps "$PSPNET_STEPS" "$STAGE1_STEPS" "$STAGE2_STEPS"
require_seed "$SEED"

enter_repo "${BASH_SOURCE[0]}"

CONFIGS=configs/two_stage_synthetic
HEIGHT=256
WIDTH=512
# Stage 2 fine-tunes at a third of stage 1's learning rate: the pruned weights are a starting
# point worth keeping, not noise to be overwritten.
STAGE2_LEARNING_RATE=0.002
DATA="$OUTPUT/data"
TIMES="$OUTPUT/stage_seconds.txt"
mkdir -p "$OUTPUT"
: > "$TIMES"

# init_override CHECKPOINT: start from a segmentation checkpoint (every variable whose name and
# shape match is restored).
init_override() {
  printf 'train_config { fine_tune_checkpoint: "%s" fine_tune_checkpoint_type: "segmentation" }' \
    "$1"
}

# evaluate CONFIG TRAIN_DIR CHECKPOINT_NAME EVAL_DIR: one checkpoint, then exit.
evaluate() {
  "$PYTHON" eval.py --config_path "$1" --config_override "$(data_override)" \
    --train_dir "$2" --evaluate_all_from_checkpoint "$3" --eval_dir "$4"
}

# ---- data: 400 training and 50 validation scenes (kept when already written)
if [[ -f "$DATA/synthetic_train.record" && -f "$DATA/synthetic_val.record" ]]; then
  echo "==== data: keeping the records in $DATA"
else
  run_stage data "$PYTHON" dataset_tools/create_synthetic_dataset.py --output_dir "$DATA" \
    --num_train 400 --num_val 50 --height "$HEIGHT" --width "$WIDTH" --seed "$SEED"
fi

# ---- stage 0: PSPNet50 at filter_scale 0.5
PSPNET_CONFIG="$CONFIGS/pspnet_0.5_synthetic_stage_0.config"
run_stage pspnet_train "$PYTHON" train.py --config_path "$PSPNET_CONFIG" \
  --logdir "$OUTPUT/pspnet/train" --seed "$SEED" \
  --config_override "$(data_override)" --config_override "$(steps_override "$PSPNET_STEPS")"
run_stage pspnet_eval evaluate "$PSPNET_CONFIG" "$OUTPUT/pspnet/train" \
  "model.ckpt-$PSPNET_STEPS" "$OUTPUT/pspnet/eval"

# ---- stage 1: ICNet 0.5, shared backbone from the PSPNet checkpoint
STAGE1_CONFIG="$CONFIGS/icnet_0.5_synthetic_stage_1.config"
run_stage stage1_train "$PYTHON" train.py --config_path "$STAGE1_CONFIG" \
  --logdir "$OUTPUT/icnet_stage_1/train" --seed "$SEED" \
  --config_override "$(data_override)" --config_override "$(steps_override "$STAGE1_STEPS")" \
  --config_override "$(init_override "$OUTPUT/pspnet/train/model.ckpt-$PSPNET_STEPS")"
run_stage stage1_eval evaluate "$STAGE1_CONFIG" "$OUTPUT/icnet_stage_1/train" \
  "model.ckpt-$STAGE1_STEPS" "$OUTPUT/icnet_stage_1/eval"

# ---- compress: keep half the filters of every prunable conv -> ICNet 0.25. The config is the
# effective one train.py wrote, so the pruned pipeline.config points at the same records.
PRUNED="$OUTPUT/icnet_pruned"
run_stage compress "$PYTHON" compress.py \
  --input_checkpoint "$OUTPUT/icnet_stage_1/train/model.ckpt-$STAGE1_STEPS" \
  --config_path "$OUTPUT/icnet_stage_1/train/pipeline.config" \
  --compression_factor 0.5 --output_dir "$PRUNED" \
  --flops_input_size "$HEIGHT,$WIDTH" --latency_input_size "$HEIGHT,$WIDTH" --latency_runs 10
run_stage pruned_eval evaluate "$PRUNED/pipeline.config" "$PRUNED" pruned_model.ckpt \
  "$PRUNED/eval"

# ---- stage 2: fine-tune the pruned model, built by compress.py's pipeline.config
run_stage stage2_train "$PYTHON" train.py --config_path "$PRUNED/pipeline.config" \
  --logdir "$OUTPUT/icnet_stage_2/train" --seed "$SEED" \
  --config_override "$(data_override)" \
  --config_override "$(steps_override "$STAGE2_STEPS" "$STAGE2_LEARNING_RATE")" \
  --config_override "$(init_override "$PRUNED/pruned_model.ckpt")"
run_stage stage2_eval evaluate "$PRUNED/pipeline.config" "$OUTPUT/icnet_stage_2/train" \
  "model.ckpt-$STAGE2_STEPS" "$OUTPUT/icnet_stage_2/eval"

# ---- summary
"$PYTHON" - "$OUTPUT" <<'PY'
import json
import os
import sys

out = sys.argv[1]
seconds = dict(line.split() for line in open(os.path.join(out, "stage_seconds.txt")))

def miou(stage):
    with open(os.path.join(out, stage, "eval", "metrics_latest.json")) as handle:
        return f"{100 * json.load(handle)['miou']:.1f}"

rows = [
    ("PSPNet50 0.5 (stage 0)", miou("pspnet"), "pspnet_train", "pspnet_eval"),
    ("ICNet 0.5 (stage 1)", miou("icnet_stage_1"), "stage1_train", "stage1_eval"),
    ("ICNet 0.25, pruned", miou("icnet_pruned"), "compress", "pruned_eval"),
    ("ICNet 0.25 (stage 2)", miou("icnet_stage_2"), "stage2_train", "stage2_eval"),
]
with open(os.path.join(out, "icnet_pruned", "compression_summary.json")) as handle:
    summary = json.load(handle)
lines = [
    "| model | val mIoU (%) | train / compress (s) | eval (s) |",
    "|---|---|---|---|",
]
for name, value, work, check in rows:
    lines.append(f"| {name} | {value} | {seconds.get(work, '-')} | {seconds.get(check, '-')} |")
lines += [
    "",
    f"parameters {summary['params_before']:,} -> {summary['params_after']:,}; "
    f"GFLOPs at {summary['flops_input_size']}: {summary['gflops_before']:.2f} -> "
    f"{summary['gflops_after']:.2f}; CPU latency at {summary['latency_input_size']}: "
    f"{summary['latency_before_ms']:.1f} -> {summary['latency_after_ms']:.1f} ms "
    f"({summary['speedup']:.2f}x, {summary['threads']} threads)",
    f"data generation: {seconds['data'] + ' s' if 'data' in seconds else 'records kept'}; "
    f"total {sum(int(s) for s in seconds.values())} s",
]
text = "\n".join(lines) + "\n"
with open(os.path.join(out, "summary.md"), "w") as handle:
    handle.write(text)
print(text, end="")
PY
