# Shared by the example scripts (sourced, not run): help text, argument checks, the Python
# interpreter and timed stages.

# usage: prints the calling script's header comment, from line 2 to the "# The Python" line.
usage() {
  sed -n '2,/^# The Python/p' "$0" | sed 's/^# \{0,1\}//'
}

# common_arg "$@": the arguments every script takes, for the catch-all arm of its `case`:
#   --output DIR   sets OUTPUT
#   --seed N       sets SEED, only in scripts that give SEED a default (elsewhere it is unknown)
#   -h, --help     prints the usage and exits 0
#   anything else  one error line, exit 2
# Sets COMMON_SHIFT to the number of arguments taken, for the caller's `shift`:
#   *) common_arg "$@"; shift "$COMMON_SHIFT" ;;
common_arg() {
  case "$1" in
    --output) OUTPUT="${2:?$1 needs a value}"; COMMON_SHIFT=2 ;;
    --seed)
      [[ -n "${SEED+set}" ]] || unknown_arg "$1"  # the script has no seed
      SEED="${2:?$1 needs a value}"; COMMON_SHIFT=2 ;;
    -h|--help) usage; exit 0 ;;
    *) unknown_arg "$1" ;;
  esac
}

# unknown_arg ARG: exits 2 with one error line naming ARG.
unknown_arg() {
  echo "error: unknown argument '$1' (see --help)" >&2
  exit 2
}

# require_positive WHAT VALUE...: exits 2 unless every VALUE is a positive integer (num_steps 0
# would mean "train forever" to train.py).
require_positive() {
  local what="$1"
  shift
  local value
  for value in "$@"; do
    if ! [[ "$value" =~ ^[1-9][0-9]*$ ]]; then
      echo "error: $what must be positive integers, got '$value'" >&2
      exit 2
    fi
  done
}

# require_seed VALUE: exits 2 unless VALUE is a non-negative integer.
require_seed() {
  if ! [[ "$1" =~ ^[0-9]+$ ]]; then
    echo "error: --seed must be a non-negative integer, got '$1'" >&2
    exit 2
  fi
}

# enter_repo SCRIPT: cd to the repository root (the parent of examples/) and set PYTHON to
# $PYTHON, else .venv/bin/python when it exists, else python.
enter_repo() {
  cd "$(dirname "$1")/.."
  if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
  fi
}

# run_stage NAME COMMAND...: runs the command, appends "NAME seconds" to $TIMES.
run_stage() {
  local name="$1"
  shift
  local started=$SECONDS
  echo "==== $name: $*"
  "$@"
  echo "$name $((SECONDS - started))" >> "$TIMES"
  echo "==== $name done in $((SECONDS - started)) s"
}

# data_override: the text-format overrides every stage shares: where the synthetic records are
# ($DATA/synthetic_{train,val}.record*) and how many val scenes (50).
data_override() {
  printf 'train_input_reader { tf_record_input_reader { input_path: "%s" } } ' \
    "$DATA/synthetic_train.record*"
  printf 'eval_input_reader { tf_record_input_reader { input_path: "%s" } } ' \
    "$DATA/synthetic_val.record*"
  printf 'eval_config { num_examples: 50 }'
}

# steps_override STEPS [LEARNING_RATE]: num_steps and the poly decay over the same steps.
steps_override() {
  local rate=""
  if [[ $# -gt 1 ]]; then rate="initial_learning_rate: $2"; fi
  printf 'train_config { num_steps: %d optimizer { adam_optimizer { learning_rate {
    polynomial_decay_learning_rate { %s decay_steps: %d } } } } }' "$1" "$rate" "$1"
}
