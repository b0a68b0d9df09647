"""Average the moving averages of runs that started from the same weights (a "model soup", Wortsman et al. 2022):
two arms fine-tuned from one shipped file for the same time often average to weights better than either.

    python bench/experiments/soup.py runs/v2j runs/v2k -o runs/soup-jk
    neuralcodec export runs/soup-jk -o runs/soup-jk.safetensors --prior-bits 8

The new run directory holds the first run's recipe, log and checkpoint with its "ema" replaced by the mean of
every run's; the arms must share the architecture (and so the order of their parameters).

--slow: average the runs' slower moving averages instead (recipe ``slow_ema_decay``, the same in every run). The
checkpoint's "ema_desc" says which averages its "ema" holds, and the exported card's "weights" quotes it (the recipe
stays the first run's, as trained). One run with --slow exports that run's slow average alone:

    python bench/experiments/soup.py runs/v2j --slow -o runs/v2j-slow
"""
import argparse
import json
import shutil
from pathlib import Path

import torch

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("runs", type=Path, nargs="+")
ap.add_argument("-o", "--out", type=Path, required=True)
ap.add_argument("--slow", action="store_true", help="average the slower moving averages (slow_ema_decay)")
a = ap.parse_args()
key = "slow_ema" if a.slow else "ema"
states = [torch.load(r / "last.pt", map_location="cpu", weights_only=False) for r in a.runs]
if missing := [str(r) for r, s in zip(a.runs, states) if key not in s]:
    raise SystemExit(f"no {key} in the checkpoint of {', '.join(missing)}")
emas = [s[key] for s in states]
decays = {json.loads((r / "recipe.json").read_text()).get(f"{key}_decay") for r in a.runs}
if len(decays) != 1:
    raise SystemExit(f"the runs' {key}_decay differ ({sorted(map(str, decays))}): not one kind of average")
if len({len(e) for e in emas}) != 1 or any(x.shape != y.shape for e in emas[1:] for x, y in zip(emas[0], e)):
    raise SystemExit("the runs' parameters differ: not the same architecture")
soup = states[0]
soup["ema"] = [torch.stack([e[i].float() for e in emas]).mean(0).to(emas[0][i].dtype) for i in range(len(emas[0]))]
a.out.mkdir(parents=True, exist_ok=True)
for name in ("recipe.json", "log.jsonl"):
    shutil.copy(a.runs[0] / name, a.out / name)
soup.pop("slow_ema", None)  # the soup holds one average: its "ema"
soup["ema_desc"] = (f"the mean of {len(a.runs)} runs' {'slower ' if a.slow else ''}exponential moving averages "
                    f"(decay {decays.pop()}) at steps {', '.join(str(s['step']) for s in states)}")
torch.save(soup, a.out / "last.pt")
print(f"{a.out}: the mean of {len(a.runs)} {'slow ' if a.slow else ''}moving averages, "
      f"at steps {[s['step'] for s in states]}")
