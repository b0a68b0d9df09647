#!/usr/bin/env bash
# Trains the flagship on a lent GPU from the shipped weights for TRAIN_MIN minutes (default 7) and exports the
# result to $OUT (fp16 safetensors + card, the training log). Runs on the device machine, in the repository
# root, after `python bench/device_prep.py prepare` here; the device tool's call:
#     run(command="bash bench/device_train.sh", carry=[".whl", ".gpu/train"], timeout_s=600)
# then here: `python bench/device_prep.py restore`, and evaluate $OUT's weights with bench/kodak_rd.py.
# Dry run on this CPU (no wheels, the checkout's venv): DRY=1 PY=.venv/bin/python OUT=/tmp/out TRAIN_MIN=0.5 \
#     RECIPE=... bash bench/device_train.sh
set -euo pipefail
REPO=$(pwd)
PY=${PY:-python3}
TRAIN_MIN=${TRAIN_MIN:-7}
RECIPE=${RECIPE:-$REPO/codec/recipes/flagship-gpu.json}
SEED=${SEED:-100}
export PYTHONUNBUFFERED=1
: "${OUT:?OUT must name the folder for the results}"
if [ -z "${DRY:-}" ]; then  # the device image has torch; add what it lacks, then this package (not editable)
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site .
  export PYTHONPATH=/tmp/site
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
fi
cd /tmp  # import the installed package, not the checkout's folders
$PY -c "import torch, compressai, constriction, neuralcodec.models as m; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'compressai', compressai.__version__)"
$PY - "$RECIPE" "$TRAIN_MIN" "$SEED" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
r.update(budget_minutes=float(sys.argv[2]), seed=int(sys.argv[3]))
json.dump(r, open("/tmp/recipe.json", "w"), indent=1)
PYEOF
rm -rf /tmp/run
status=0  # the budget stops training; the timeout (SIGTERM: a clean checkpoint) only guards it
timeout -s TERM "$(awk "BEGIN {print int($TRAIN_MIN * 60 + 90)}")" $PY -m neuralcodec.cli train --recipe /tmp/recipe.json \
    --data "$REPO/.gpu/train" --run-dir /tmp/run --init-weights flagship || status=$?
echo "train exited $status"
cp /tmp/run/log.jsonl /tmp/run/recipe.json "$OUT/"
$PY -m neuralcodec.cli export /tmp/run -o "$OUT/flagship-gpu.safetensors" \
    --note "GPU run: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo cpu), $TRAIN_MIN min, data subset $(ls "$REPO/.gpu/train" | wc -l) images"
tail -n 2 "$OUT/log.jsonl"
