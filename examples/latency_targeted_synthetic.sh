#!/usr/bin/env bash
# Uniform vs latency-targeted pruning of the two-stage recipe's ICNet (docs/compression.md),
# on the synthetic street scenes, on this CPU:
#
#   uniform   compress.py --compression_factor 0.5 (ICNet 0.5 -> 0.25), measure its latency L
#   targeted  compress.py --target_latency_ms L (the same measured latency), NetAdapt search
#   both      fine-tuned the same --finetune_steps, evaluated, latency measured again
#
# It starts from the stage 1 checkpoint of examples/two_stage_synthetic.sh: pass that script's
# --output folder as --from (default two_stage_output/). Everything lands under --output
# (default latency_targeted_output/): uniform/ and targeted/ (pruned models, search trace,
# latency_search.png), *_finetune/{train,eval}/, and summary.md with the table of the docs.
#
# Usage: examples/latency_targeted_synthetic.sh [--from DIR] [--output DIR]
#            [--finetune_steps N] [--search_steps N] [--granularity group|block]
#            [--latency_size H,W] [--latency_runs N]
# --latency_size is the input size the models are timed at (default 256,512, the scenes' size;
# a larger one, e.g. 512,1024, makes each timing longer and so less noisy on a shared machine);
# --latency_runs the timed runs of each measurement (default 10).
# The Python interpreter is $PYTHON, else .venv/bin/python when it exists, else python.

set -euo pipefail

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

FROM="two_stage_output"
OUTPUT="latency_targeted_output"
FINETUNE_STEPS=200
SEARCH_STEPS=4
GRANULARITY=block
SIZE=256,512
LATENCY_RUNS=10
while [[ $# -gt 0 ]]; do
  case "$1" in
    --from) FROM="${2:?$1 needs a value}"; shift 2 ;;
    --finetune_steps) FINETUNE_STEPS="${2:?$1 needs a value}"; shift 2 ;;
    --search_steps) SEARCH_STEPS="${2:?$1 needs a value}"; shift 2 ;;
    --granularity) GRANULARITY="${2:?$1 needs a value}"; shift 2 ;;
    --latency_size) SIZE="${2:?$1 needs a value}"; shift 2 ;;
    --latency_runs) LATENCY_RUNS="${2:?$1 needs a value}"; shift 2 ;;
    *) common_arg "$@"; shift "$COMMON_SHIFT" ;;  # --output, --seed, --help, errors
  esac
done
require_positive steps "$FINETUNE_STEPS" "$SEARCH_STEPS"
require_positive --latency_runs "$LATENCY_RUNS"
if [[ ! "$SIZE" =~ ^[1-9][0-9]*,[1-9][0-9]*$ ]]; then
  echo "error: --latency_size must be HEIGHT,WIDTH in pixels, e.g. 512,1024; got '$SIZE'" >&2
  exit 2
fi

enter_repo "${BASH_SOURCE[0]}"
STAGE1="$FROM/icnet_stage_1/train"
# (|| true: with pipefail a failing ls would end the script here without a word.)
CHECKPOINT="$(ls "$STAGE1"/model.ckpt-*.index 2>/dev/null | sort -V | tail -1 || true)"
if [[ -z "$CHECKPOINT" || ! -f "$STAGE1/pipeline.config" ]]; then
  echo "error: no stage 1 checkpoint in $STAGE1; run examples/two_stage_synthetic.sh first" \
    "(or pass its --output as --from)" >&2
  exit 2
fi
CHECKPOINT="${CHECKPOINT%.index}"
DATA="$FROM/data"
mkdir -p "$OUTPUT"
TIMES="$OUTPUT/stage_seconds.txt"
: > "$TIMES"

finetune_and_eval() {  # NAME PRUNED_DIR
  local config="$2/pipeline.config"
  run_stage "$1_finetune" "$PYTHON" train.py --config_path "$config" \
    --logdir "$OUTPUT/$1_finetune/train" --seed 0 --config_override "$(data_override)" \
    --config_override "train_config { num_steps: $FINETUNE_STEPS fine_tune_checkpoint: \
\"$2/pruned_model.ckpt\" fine_tune_checkpoint_type: \"segmentation\" }"
  "$PYTHON" eval.py --config_path "$config" --config_override "$(data_override)" \
    --train_dir "$OUTPUT/$1_finetune/train" --eval_dir "$OUTPUT/$1_finetune/eval" \
    --evaluate_all_from_checkpoint "model.ckpt-$FINETUNE_STEPS"
}

run_stage uniform_compress "$PYTHON" compress.py --input_checkpoint "$CHECKPOINT" \
  --config_path "$STAGE1/pipeline.config" --output_dir "$OUTPUT/uniform" \
  --compression_factor 0.5 --flops_input_size "$SIZE" --latency_input_size "$SIZE" \
  --latency_runs "$LATENCY_RUNS"
TARGET="$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["latency_after_ms"])' \
  "$OUTPUT/uniform/compression_summary.json")"
run_stage targeted_compress "$PYTHON" compress.py --input_checkpoint "$CHECKPOINT" \
  --config_path "$STAGE1/pipeline.config" --output_dir "$OUTPUT/targeted" \
  --target_latency_ms "$TARGET" --latency_input_size "$SIZE" --latency_runs "$LATENCY_RUNS" \
  --flops_input_size "$SIZE" --search_steps "$SEARCH_STEPS" --search_granularity "$GRANULARITY" \
  --search_eval_batches 10 --search_recalibrate_batches 5 \
  --latency_table_dir "$OUTPUT/latency_tables"
finetune_and_eval uniform "$OUTPUT/uniform"
finetune_and_eval targeted "$OUTPUT/targeted"

# Both fine-tuned models timed in one interleaved run (the machine's load moves the figures).
"$PYTHON" - "$OUTPUT" "$SIZE" "$FINETUNE_STEPS" "$LATENCY_RUNS" <<'PY'
import json
import os
import sys

from builders import config_util
from core.analysis import latency_model
from core.pruning import compression
from runners.common import load_model

out, size, steps = sys.argv[1], [int(n) for n in sys.argv[2].split(",")], sys.argv[3]
runs = int(sys.argv[4])
models = {}
for name in ("uniform", "targeted"):
    config = config_util.load_pipeline_config(os.path.join(out, name, "pipeline.config"))
    models[name], _ = load_model(config, os.path.join(out, f"{name}_finetune", "train"))
times = {name: [] for name in models}
for _ in range(5):  # rounds of both models in turn; the median round is reported
    for name, model in models.items():
        times[name].append(compression.measure_latency(model, size, runs).median_ms)
seconds = dict(line.split() for line in open(os.path.join(out, "stage_seconds.txt")))
search = json.load(open(os.path.join(out, "targeted", "compression_summary.json")))
found = search["latency_search"]
lines = [
    f"| pruned ICNet, fine-tuned {steps} steps | val mIoU (%) | CPU latency at {size} (ms) |",
    "|---|---|---|",
]
for name in models:
    metrics = json.load(open(os.path.join(out, f"{name}_finetune", "eval", "metrics_latest.json")))
    median = sorted(times[name])[2]
    lines.append(f"| {name} | {100 * metrics['miou']:.1f} | {median:.1f} |")
lines += [
    "",
    f"target {found['target_ms']:.1f} ms: predicted {found['predicted_ms']:.1f}, measured "
    f"{found['measured_ms']:.1f} ms right after the search; search "
    f"{int(seconds['targeted_compress']) / 60:.1f} min ({found['search_candidates']} candidates, "
    f"{found['search_steps']} steps); machine {latency_model.machine_key()}",
]
text = "\n".join(lines) + "\n"
open(os.path.join(out, "summary.md"), "w").write(text)
print(text, end="")
PY
