"""Average the moving averages of runs that started from the same weights (a "model soup", Wortsman et al. 2022):
two arms fine-tuned from one shipped file for the same time often average to weights better than either.

    python bench/experiments/soup.py runs/v2j runs/v2k -o runs/soup-jk
    neuralcodec export runs/soup-jk -o runs/soup-jk.safetensors --prior-bits 8

The new run directory holds the first run's recipe, log and checkpoint with its "ema" replaced by the mean of
every run's; the arms must share the architecture (and so the order of their parameters).
"""
import argparse
import shutil
from pathlib import Path

import torch

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("runs", type=Path, nargs="+")
ap.add_argument("-o", "--out", type=Path, required=True)
a = ap.parse_args()
states = [torch.load(r / "last.pt", map_location="cpu", weights_only=False) for r in a.runs]
emas = [s["ema"] for s in states]
if len({len(e) for e in emas}) != 1 or any(x.shape != y.shape for e in emas[1:] for x, y in zip(emas[0], e)):
    raise SystemExit("the runs' parameters differ: not the same architecture")
soup = states[0]
soup["ema"] = [torch.stack([e[i].float() for e in emas]).mean(0).to(emas[0][i].dtype) for i in range(len(emas[0]))]
a.out.mkdir(parents=True, exist_ok=True)
for name in ("recipe.json", "log.jsonl"):
    shutil.copy(a.runs[0] / name, a.out / name)
torch.save(soup, a.out / "last.pt")
print(f"{a.out}: the mean of {len(a.runs)} moving averages, at steps {[s['step'] for s in states]}")
