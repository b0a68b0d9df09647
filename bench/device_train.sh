#!/usr/bin/env bash
# Trains the flagship on a lent GPU from the shipped weights and exports the result to $OUT (fp16 safetensors +
# card, the training log). Runs on the device machine, in the repository root, after
# `python bench/device_prep.py prepare` here; the device tool's call:
#     run(command="bash bench/device_train.sh", carry=[".whl", ".gpu/train"], timeout_s=600)
# then here: `python bench/device_prep.py restore`, and evaluate $OUT's weights with bench/kodak_rd.py.
# Training gets TRAIN_MIN minutes (default 7), less if the call's DEADLINE_S (default 570 s from the script's
# start, under the tool's 600 s) would not leave 60 s for the export; lower DEADLINE_S when the tool's limit_s is.
# Dry run on this CPU (no wheels, the checkout's venv): DRY=1 PY=.venv/bin/python OUT=/tmp/out TRAIN_MIN=0.5 \
#     RECIPE=... bash bench/device_train.sh
set -euo pipefail
START=$(date +%s)
REPO=$(pwd)
PY=${PY:-python3}
TRAIN_MIN=${TRAIN_MIN:-7}
DEADLINE_S=${DEADLINE_S:-570}
RECIPE=${RECIPE:-$REPO/codec/train/recipes/flagship-gpu.json}
SEED=${SEED:-100}
export PYTHONUNBUFFERED=1
: "${OUT:?OUT must name the folder for the results}"
if [ -z "${DRY:-}" ]; then  # the device image has torch; add what it lacks, then this package (not editable)
  rm -rf /tmp/site  # a warm machine keeps /tmp: never train with an older copy of the package
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site .
  export PYTHONPATH=/tmp/site
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
fi
cd /tmp  # import the installed package, not the checkout's folders
$PY -c "import torch, compressai, constriction, neuralcodec.models as m; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'compressai', compressai.__version__)"
# the training budget: TRAIN_MIN, or what the deadline leaves after 60 s for loading the corpus and exporting
BUDGET_MIN=$($PY -c "import sys; print(round(max(0.5, min($TRAIN_MIN, ($DEADLINE_S - ($(date +%s) - $START) - 60) / 60)), 2))")
echo "training budget $BUDGET_MIN min"
$PY - "$RECIPE" "$BUDGET_MIN" "$SEED" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
r.update(budget_minutes=float(sys.argv[2]), seed=int(sys.argv[3]))
json.dump(r, open("/tmp/recipe.json", "w"), indent=1)
PYEOF
rm -rf /tmp/run
status=0  # the budget stops training; the timeout (SIGTERM: a clean checkpoint) only guards it
timeout -k 15 -s TERM "$($PY -c "print(int($BUDGET_MIN * 60 + 45))")" $PY -m neuralcodec train \
    --recipe /tmp/recipe.json --data "$REPO/.gpu/train" --run-dir /tmp/run --init-weights flagship || status=$?
echo "train exited $status"
cp /tmp/run/log.jsonl /tmp/run/recipe.json "$OUT/" || true
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ]; then exit "$status"; fi
$PY -m neuralcodec export /tmp/run -o "$OUT/flagship-gpu.safetensors" \
    --note "GPU run: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo cpu), $BUDGET_MIN min, data subset $(ls "$REPO/.gpu/train" | wc -l) images"
tail -n 2 "$OUT/log.jsonl"
echo "done in $(( $(date +%s) - START )) s"
