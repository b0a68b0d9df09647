#!/usr/bin/env bash
# The end of a session's training (issue 19): stop the arms, average their EMAs into a soup, measure every one.
#
#   bench/soup_arms.sh [--soup-only] SOUP_NAME RUN_DIR [RUN_DIR ...]   e.g. bench/soup_arms.sh soup-jk runs/v2j runs/v2k
#
# Each arm is a training run started from the same weights (weights/training/README.md: one thread each, side by
# side). Stops them cleanly (SIGTERM: each writes its checkpoint and exits), makes runs/SOUP_NAME from the mean of
# their EMAs (bench/experiments/soup.py), exports every arm and the soup with the 8-bit prior (runs/NAME.safetensors),
# codes all 24 Kodak images with each as real files at eight qualities (bench/kodak_rd.py, one thread per
# evaluation, two at a time: ~9 minutes per evaluation on one core; runs/eval-NAME/), and compares each with the
# shipped curve (bench/compare_weights.py: BD-rate and dB at equal bpp per quality). Shipping stays a decision:
# bench/ship_weights.py, only for weights better at every rate. Resume the arms afterwards with their own recipes
# (`neuralcodec train --recipe RUN/recipe.json --run-dir RUN`). --soup-only: export and evaluate the soup alone, on
# two threads (~6 minutes), when the arms' own curves are not needed.
set -euo pipefail
only=0
if [ "${1:-}" = "--soup-only" ]; then only=1; shift; fi
soup=$1; shift
set -- "${@%/}"  # runs/v2j/ and runs/v2j are one run
[ $# -ge 1 ] || { echo "usage: $0 [--soup-only] SOUP_NAME RUN_DIR [RUN_DIR ...]" >&2; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
alive() {  # whether any of the runs still trains
  for run in "$@"; do pgrep -f -- "--run-dir $run( |\$)" >/dev/null && return 0; done
  return 1
}
for run in "$@"; do
  [ -f "$run/last.pt" ] || { echo "$run: no checkpoint (last.pt)" >&2; exit 2; }
  pkill -TERM -f -- "--run-dir $run( |\$)" || true
done
while alive "$@"; do sleep 2; done
dirs=()
if [ $# -ge 2 ]; then
  python bench/experiments/soup.py "$@" -o "runs/$soup"
  dirs+=("runs/$soup")
fi
threads=1
if [ $only = 1 ] && [ $# -ge 2 ]; then
  threads=2
else
  dirs+=("$@")  # after the soup: the likely candidate is measured first
fi
for dir in "${dirs[@]}"; do
  name=$(basename "$dir")
  neuralcodec export "$dir" -o "runs/$name.safetensors" --prior-bits 8 --note "arm $name" > "runs/export-$name.log" 2>&1 &
done
wait
evaluate() {
  python bench/kodak_rd.py --weights "runs/$1.safetensors" --qualities 0,15,30,45,60,75,90,100 --no-deblock --card \
    --threads $threads -o "runs/eval-$1" > "runs/eval-$1.log" 2>&1
}
running=0
for dir in "${dirs[@]}"; do
  name=$(basename "$dir")
  evaluate "$name" &
  running=$((running + 1))
  if [ $running -ge 2 ]; then wait -n; running=$((running - 1)); fi
done
wait
for dir in "${dirs[@]}"; do
  name=$(basename "$dir")
  echo "== $name"
  python bench/compare_weights.py bench/results/kodak/neuralcodec.json "runs/eval-$name/neuralcodec.json" || true
done
