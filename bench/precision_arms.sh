#!/usr/bin/env bash
# Training precision compared in equal-time arms from one checkpoint (issue 19, "twice the steps per hour").
#
#   bench/precision_arms.sh RUN_DIR MINUTES OUT_DIR
#
# Arm fp32 is RUN_DIR itself (the main run loses nothing), trained MINUTES more; arm bf16 is a copy of RUN_DIR's
# checkpoint (weights, Adam state, EMA, data-sampler state: the same batches) trained with the recipe's
# precision "bf16" (the transforms' interior layers under bfloat16 autocast) for the same MINUTES, one arm after
# the other with the two cores to themselves. The bf16 arm is also exported at the fp32 arm's final step, so
# both an equal-time and an equal-step comparison come out. Each export is measured on all 24 Kodak images
# with real files (bench/kodak_rd.py, q 0/30/60/100) and compared with the fp32 arm (bench/compare_weights.py).
set -euo pipefail
run=$1; minutes=$2; out=$3
mkdir -p "$out/bf16"
step() { python -c "import torch;print(torch.load('$1/last.pt',map_location='cpu',weights_only=False)['step'])"; }
start=$(step "$run")
[ -e "$out/bf16/last.pt" ] || cp "$run/last.pt" "$out/bf16/last.pt"
python - "$run/recipe.json" "$out/bf16/arm-recipe.json" <<'P'
import json, sys
r = json.load(open(sys.argv[1])); r.update(precision="bf16", wake_from=0, wake_steps=0, wake_lr=0.0)
json.dump(r, open(sys.argv[2], "w"), indent=1)
P
echo "$(date +%T) arm fp32: $run from step $start, $minutes min"
neuralcodec train --recipe "$run/recipe.json" --run-dir "$run" --minutes "$minutes" >> "$run/out.log" 2>&1
end32=$(step "$run")
neuralcodec export "$run" -o "$out/fp32.safetensors" --note "precision arm fp32, $start to $end32"
echo "$(date +%T) arm bf16: from step $start to $end32 (equal steps), then to $minutes min in all"
t0=$(date +%s)
neuralcodec train --recipe "$out/bf16/arm-recipe.json" --run-dir "$out/bf16" --steps "$end32" > "$out/bf16/arm.log" 2>&1
neuralcodec export "$out/bf16" -o "$out/bf16-equal-steps.safetensors" --note "precision arm bf16, $start to $end32"
left=$(python -c "print(max(0.5, $minutes - ($(date +%s) - $t0) / 60))")
neuralcodec train --recipe "$out/bf16/arm-recipe.json" --run-dir "$out/bf16" --minutes "$left" >> "$out/bf16/arm.log" 2>&1
end16=$(step "$out/bf16")
neuralcodec export "$out/bf16" -o "$out/bf16.safetensors" --note "precision arm bf16, $start to $end16"
echo "$(date +%T) steps: fp32 $start..$end32, bf16 $start..$end16"
for arm in fp32 bf16-equal-steps bf16; do
  echo "$(date +%T) measuring $arm"
  python bench/kodak_rd.py --weights "$out/$arm.safetensors" --qualities 0,30,60,100 -o "$out/eval-$arm" > "$out/eval-$arm.txt"
done
for arm in bf16-equal-steps bf16; do
  echo "== $arm against fp32"; python bench/compare_weights.py "$out/eval-fp32/neuralcodec.json" "$out/eval-$arm/neuralcodec.json" || true
done
