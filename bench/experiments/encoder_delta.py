"""Carry encoder-only runs' change of the analysis onto other weights (task arithmetic on the moving averages).

    python bench/experiments/encoder_delta.py runs/soup-jk3 runs/enc1 --base flagship -o runs/soup-jk3-enc
    python bench/experiments/encoder_delta.py runs/soup-jk5 runs/enc2 runs/enc3 --base W -o runs/soup-jk5-enc
    neuralcodec export runs/soup-jk3-enc -o runs/soup-jk3-enc.safetensors --prior-bits 8

An encoder-only run (recipe ``train_only``: g_a, h_a, mod_a) from the shipped ``--base`` weights learns a change of
the analysis against that decoder; joint arms from the same weights move the decoder a little at the same time.
The output run directory is the first run's (recipe, log, checkpoint) with its moving average's analysis
parameters plus the encoder run's (moving average minus ``--base``): the analysis change made for the old decoder,
applied beside the new one. Several encoder runs from the same base (other seeds or learning rates) give the mean
of their changes: a soup of encoders. Whether it still helps there is for the Kodak curve to say
(bench/kodak_rd.py).
"""
import argparse
import shutil
from pathlib import Path

import torch

from neuralcodec.models import build
from neuralcodec.train.loop import Recipe
from neuralcodec.zoo import weights_io

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("target", type=Path, help="run directory whose moving average gets the change")
ap.add_argument("encoder_runs", type=Path, nargs="+", metavar="ENCODER_RUN",
                help="encoder-only runs from --base (their recipes' train_only names what moved); several: their mean "
                "change")
ap.add_argument("--base", default="flagship", help="the weights the encoder runs started from")
ap.add_argument("-o", "--out", type=Path)
ap.add_argument("--check", action="store_true", help="only check the encoder runs and their base, as "
                "bench/soup_arms.sh does before it stops any run (TARGET is not read)")
a = ap.parse_args()
if not (a.check or a.out):
    ap.error("-o/--out is required")
recipes = [Recipe.load(run / "recipe.json") for run in a.encoder_runs]
recipe = recipes[0]
for run, r in zip(a.encoder_runs, recipes):
    if not r.train_only:
        raise SystemExit(f"{run} trained everything: not an encoder-only run")
    if (r.arch, r.model, r.train_only) != (recipe.arch, recipe.model, recipe.train_only):
        raise SystemExit(f"{run} and {a.encoder_runs[0]} differ in model or in what they train")
try:
    base = weights_io.load(a.base).tensors
except Exception as e:
    raise SystemExit(f"the encoder runs' base {a.base}: {e}")
if not any(k.startswith("g_a.") for k in base):
    raise SystemExit(f"{a.base} holds no analysis (a decoder-only archive?): give the weights the encoder runs "
                     f"started from")
if a.check:
    raise SystemExit(0)
names = [n for n, _ in build(recipe.arch, **recipe.model).named_parameters()]
target = torch.load(a.target / "last.pt", map_location="cpu", weights_only=False)
encoders = [torch.load(run / "last.pt", map_location="cpu", weights_only=False) for run in a.encoder_runs]
if any(len(e["ema"]) != len(names) for e in encoders) or len(target["ema"]) != len(names):
    raise SystemExit("the runs' parameters differ: not the same architecture")
changed = 0
for i, name in enumerate(names):
    if name.startswith(tuple(recipe.train_only)):
        start = torch.from_numpy(base[name]).float().reshape(target["ema"][i].shape)
        change = sum(e["ema"][i].float() - start for e in encoders) / len(encoders)
        target["ema"][i] = (target["ema"][i].float() + change).to(target["ema"][i].dtype)
        changed += change.numel()
target.pop("slow_ema", None)  # the output holds one average, the one with the change
target["ema_desc"] = (f"{target.get('ema_desc', 'the exponential moving average of ' + str(a.target))}, plus the "
                      f"analysis change of the encoder-only run{'s' if len(encoders) > 1 else ''} "
                      + " and ".join(f"{run} at step {e['step']}" for run, e in zip(a.encoder_runs, encoders))
                      + (" (the mean of their changes, " if len(encoders) > 1 else " (")
                      + f"from {a.base})")
a.out.mkdir(parents=True, exist_ok=True)
for name in ("recipe.json", "log.jsonl"):
    shutil.copy(a.target / name, a.out / name)
torch.save(target, a.out / "last.pt")
print(f"{a.out}: {a.target}'s moving average with {changed:,} analysis parameters moved as in "
      f"{' and '.join(map(str, a.encoder_runs))}{' (the mean change)' if len(encoders) > 1 else ''}")
