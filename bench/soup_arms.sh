#!/usr/bin/env bash
# The end of a session's training (issue 19): stop the arms, average their EMAs into a soup, measure every one.
#
#   bench/soup_arms.sh [--soup-only] [--encoder ENC_RUN[,ENC_RUN...] BASE] SOUP_NAME RUN_DIR RUN_DIR [...]
#   e.g. bench/soup_arms.sh soup-jk runs/v2j runs/v2k
#
# Each arm is a training run started from the same weights (weights/training/README.md: one thread each, side by
# side), named by a run directory relative to the repository root. Checks first (every arm has a checkpoint, the
# soup's name is new), then stops the arms cleanly (SIGTERM: each writes its checkpoint and exits; a run that is not
# found training is reported), makes runs/SOUP_NAME from the mean of their EMAs (bench/experiments/soup.py), exports
# the soup and every arm with the 8-bit prior (runs/NAME.safetensors), codes all 24 Kodak images with each as real
# files at eight qualities (bench/kodak_rd.py, one thread per evaluation, two at a time: ~9 minutes per evaluation on
# one core; runs/eval-NAME/), and compares each with the shipped curve (bench/compare_weights.py: BD-rate and dB at
# equal bpp per quality). --soup-only: the soup alone, on two threads (~6 minutes). Shipping stays a decision:
# bench/ship_weights.py, only for weights better at every rate. --encoder ENC_RUN BASE: an encoder-only run (recipe
# train_only) started from the weights BASE (a name or path holding the analysis) is stopped too, and its change of
# the analysis is added to the soup as runs/SOUP_NAME-enc (bench/experiments/encoder_delta.py), measured beside the
# soup (with --soup-only the two run at once, one thread each) and against it. Several encoder runs from one BASE,
# joined by commas (runs/enc2,runs/enc3): each is stopped, and the soup gets the mean of their changes.
# Resume the arms (and the encoder runs) afterwards with their own recipes
# (`neuralcodec train --recipe RUN/recipe.json --run-dir RUN`). Exits 1 if an export or an evaluation failed (its
# log is runs/export-NAME.log or runs/eval-NAME.log).
set -euo pipefail
usage() {
  echo "usage: $0 [--soup-only] [--encoder ENC_RUN[,ENC_RUN...] BASE] SOUP_NAME RUN_DIR RUN_DIR [...]" >&2
  exit 2
}
only=0
encs=()
base=""
while [ $# -gt 0 ]; do
  case "$1" in
    --soup-only) only=1; shift ;;
    --encoder)
      [ $# -ge 3 ] || usage
      IFS=, read -r -a encs <<< "$2"
      [ ${#encs[@]} -gt 0 ] || usage
      case "$2" in ,*|*,|*,,*) usage ;; esac  # an empty entry
      encs=("${encs[@]%/}"); base=$3; shift 3 ;;
    -*) usage ;;
    *) break ;;
  esac
done
[ $# -ge 3 ] || usage
case "$1" in */*) echo "the soup's name $1 is a path: give a name (it goes in runs/)" >&2; exit 2 ;; esac
soup=$1; shift
set -- "${@%/}"  # runs/v2j/ and runs/v2j are one run
cd "$(dirname "$0")/.."

# everything checked before any arm is stopped
for run in "$@"; do
  [ -f "$run/last.pt" ] || { echo "$run: no checkpoint (last.pt)" >&2; exit 2; }
  [ "$(basename "$run")" != "$soup" ] || { echo "the soup's name $soup is an arm's" >&2; exit 2; }
done
[ ! -e "runs/$soup" ] || { echo "runs/$soup exists: choose a new soup name" >&2; exit 2; }
if [ ${#encs[@]} -gt 0 ]; then
  for enc in "${encs[@]}"; do
    [ -f "$enc/last.pt" ] || { echo "$enc: no checkpoint (last.pt)" >&2; exit 2; }
  done
  [ ! -e "runs/$soup-enc" ] || { echo "runs/$soup-enc exists: choose a new soup name" >&2; exit 2; }
  python bench/experiments/encoder_delta.py "$1" "${encs[@]}" --base "$base" --check || exit 2
fi

escape() { printf '%s' "$1" | sed 's/[.[\*^$+?(){}|]/\\&/g'; }  # a literal in an extended regex
pattern() {  # a training process of run $1, however its directory was written (runs/x, ./runs/x, runs/x/, absolute)
  printf -- '--run-dir (\\./|%s/)?%s/?( |$)' "$(escape "$(pwd)")" "$(escape "$1")"
}
stopping=("$@" ${encs[@]+"${encs[@]}"})  # (an empty array is "unbound" to bash < 4.4)
for run in "${stopping[@]}"; do
  pkill -TERM -f -- "$(pattern "$run")" || echo "note: $run was not training" >&2
done
for _ in $(seq 300); do  # a clean stop writes the checkpoint first: up to ten minutes
  busy=0
  for run in "${stopping[@]}"; do pgrep -f -- "$(pattern "$run")" >/dev/null && busy=1; done
  [ $busy = 0 ] && break
  sleep 2
done
[ $busy = 0 ] || { echo "the runs did not stop within ten minutes" >&2; exit 1; }

python bench/experiments/soup.py "$@" -o "runs/$soup"
dirs=("runs/$soup")
threads=2
delta_fail=0
if [ ${#encs[@]} -gt 0 ]; then
  if python bench/experiments/encoder_delta.py "runs/$soup" "${encs[@]}" --base "$base" -o "runs/$soup-enc"; then
    dirs+=("runs/$soup-enc")
    threads=1
  else
    echo "the encoder change was not added: the soup alone is measured" >&2
    delta_fail=1
  fi
fi
if [ $only = 0 ]; then
  dirs+=("$@")  # after the soup: the likely candidate is measured first
  threads=1
fi
fail=0
pids=()
for dir in "${dirs[@]}"; do
  name=$(basename "$dir")
  neuralcodec export "$dir" -o "runs/$name.safetensors" --prior-bits 8 --note "$name (bench/soup_arms.sh)" \
    > "runs/export-$name.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || fail=1; done
[ $fail = 0 ] || { echo "an export failed: runs/export-*.log" >&2; exit 1; }

evaluate() {
  python bench/kodak_rd.py --weights "runs/$1.safetensors" --qualities 0,15,30,45,60,75,90,100 --no-deblock --card \
    --threads $threads -o "runs/eval-$1" > "runs/eval-$1.log" 2>&1
}
running=0
for dir in "${dirs[@]}"; do
  evaluate "$(basename "$dir")" &
  running=$((running + 1))
  if [ $running -ge 2 ]; then
    wait -n || fail=1
    running=$((running - 1))
  fi
done
while [ $running -gt 0 ]; do
  wait -n || fail=1
  running=$((running - 1))
done
for dir in "${dirs[@]}"; do
  name=$(basename "$dir")
  echo "== $name"
  if [ -f "runs/eval-$name/neuralcodec.json" ]; then
    python bench/compare_weights.py bench/results/kodak/neuralcodec.json "runs/eval-$name/neuralcodec.json" || true
  else
    echo "no evaluation: runs/eval-$name.log"
  fi
done
if [ ${#encs[@]} -gt 0 ] && [ -f "runs/eval-$soup/neuralcodec.json" ] \
   && [ -f "runs/eval-$soup-enc/neuralcodec.json" ]; then
  echo "== $soup-enc against $soup"
  python bench/compare_weights.py "runs/eval-$soup/neuralcodec.json" "runs/eval-$soup-enc/neuralcodec.json" || true
fi
exit $(( fail || delta_fail ))
