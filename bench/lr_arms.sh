#!/usr/bin/env bash
# Peak learning rates compared in equal-step arms from one checkpoint (issue 19, "better use of each step").
#
#   bench/lr_arms.sh RUN_DIR STEPS OUT_DIR LR [LR ...]
#
# Each arm is a copy of RUN_DIR's checkpoint (same weights, Adam state, EMA and data-sampler state, so every
# arm sees the same batches) trained STEPS more steps at a constant peak LR, one arm after the other with the
# two cores to itself. Each arm's EMA weights are then exported and measured on all 24 Kodak images with real
# files (bench/kodak_rd.py, q 0/30/60/100), and compared with the first arm (bench/compare_weights.py).
# The arm whose LR equals RUN_DIR's own is RUN_DIR itself: the main run loses no steps to it.
set -euo pipefail
run=$1; steps=$2; out=$3; shift 3
mkdir -p "$out"
start=$(python -c "import torch;print(torch.load('$run/last.pt',map_location='cpu',weights_only=False)['step'])")
own=$(python -c "import json;print(json.load(open('$run/recipe.json'))['lr'])")
arm_dir() {  # the arm at the run's own LR is the run itself
  if python -c "import sys;sys.exit(abs($1-$own)>1e-12)"; then echo "$run"; else echo "$out/lr$1"; fi
}
for lr in "$@"; do  # every fork is taken before any arm trains (the run's own arm moves its checkpoint on)
  arm=$(arm_dir "$lr")
  if [ "$arm" != "$run" ] && [ ! -e "$arm/last.pt" ]; then
    mkdir -p "$arm"; cp "$run/last.pt" "$arm/last.pt"
  fi
done
for lr in "$@"; do
  arm=$(arm_dir "$lr")
  python - "$run/recipe.json" "$arm/arm-recipe.json" "$lr" <<'P'
import json, sys
r = json.load(open(sys.argv[1])); r.update(lr=float(sys.argv[3]), wake_from=0, wake_steps=0, wake_lr=0.0)
json.dump(r, open(sys.argv[2], "w"), indent=1)
P
  echo "$(date +%T) arm lr $lr: $arm from step $start to $((start + steps))"
  neuralcodec train --recipe "$arm/arm-recipe.json" --run-dir "$arm" --steps $((start + steps)) > "$arm/arm.log" 2>&1
  neuralcodec export "$arm" -o "$out/lr$lr.safetensors" --note "lr arm $lr, $steps steps from $start"
done
for lr in "$@"; do
  echo "$(date +%T) measuring lr $lr"
  python bench/kodak_rd.py --weights "$out/lr$lr.safetensors" --qualities 0,30,60,100 -o "$out/eval-lr$lr" > "$out/eval-lr$lr.txt"
done
first=$1
for lr in "$@"; do
  echo "== lr $lr against lr $first"; python bench/compare_weights.py "$out/eval-lr$first/neuralcodec.json" "$out/eval-lr$lr/neuralcodec.json" || true
  grep BD-rate "$out/eval-lr$lr.txt"
done
