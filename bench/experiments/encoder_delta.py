"""Carry an encoder-only run's change of the analysis onto other weights (task arithmetic on the moving averages).

    python bench/experiments/encoder_delta.py runs/soup-jk3 runs/enc1 --base flagship -o runs/soup-jk3-enc
    neuralcodec export runs/soup-jk3-enc -o runs/soup-jk3-enc.safetensors --prior-bits 8

An encoder-only run (recipe ``train_only``: g_a, h_a, mod_a) from the shipped ``--base`` weights learns a change of
the analysis against that decoder; joint arms from the same weights move the decoder a little at the same time.
The output run directory is the first run's (recipe, log, checkpoint) with its moving average's analysis
parameters plus the encoder run's (moving average minus ``--base``): the analysis change made for the old decoder,
applied beside the new one. Whether it still helps there is for the Kodak curve to say (bench/kodak_rd.py).
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
ap.add_argument("encoder_run", type=Path, help="the encoder-only run (its recipe's train_only names what moved)")
ap.add_argument("--base", default="flagship", help="the weights the encoder run started from")
ap.add_argument("-o", "--out", type=Path)
ap.add_argument("--check", action="store_true", help="only check the encoder run and its base, as bench/soup_arms.sh "
                "does before it stops any run (TARGET is not read)")
a = ap.parse_args()
if not (a.check or a.out):
    ap.error("-o/--out is required")
recipe = Recipe.load(a.encoder_run / "recipe.json")
if not recipe.train_only:
    raise SystemExit(f"{a.encoder_run} trained everything: not an encoder-only run")
try:
    base = weights_io.load(a.base).tensors
except Exception as e:
    raise SystemExit(f"the encoder run's base {a.base}: {e}")
if not any(k.startswith("g_a.") for k in base):
    raise SystemExit(f"{a.base} holds no analysis (a decoder-only archive?): give the weights the encoder run "
                     f"started from")
if a.check:
    raise SystemExit(0)
names = [n for n, _ in build(recipe.arch, **recipe.model).named_parameters()]
target = torch.load(a.target / "last.pt", map_location="cpu", weights_only=False)
encoder_state = torch.load(a.encoder_run / "last.pt", map_location="cpu", weights_only=False)
moved, moved_step = encoder_state["ema"], encoder_state["step"]
if not (len(names) == len(target["ema"]) == len(moved)):
    raise SystemExit("the runs' parameters differ: not the same architecture")
changed = 0
for i, name in enumerate(names):
    if name.startswith(tuple(recipe.train_only)):
        start = torch.from_numpy(base[name]).float().reshape(moved[i].shape)
        target["ema"][i] = (target["ema"][i].float() + moved[i].float() - start).to(target["ema"][i].dtype)
        changed += moved[i].numel()
target.pop("slow_ema", None)  # the output holds one average, the one with the change
target["ema_desc"] = (f"{target.get('ema_desc', 'the exponential moving average of ' + str(a.target))}, plus the "
                      f"analysis change of the encoder-only run {a.encoder_run} at step {moved_step} (from {a.base})")
a.out.mkdir(parents=True, exist_ok=True)
for name in ("recipe.json", "log.jsonl"):
    shutil.copy(a.target / name, a.out / name)
torch.save(target, a.out / "last.pt")
print(f"{a.out}: {a.target}'s moving average with {changed:,} analysis parameters moved as in {a.encoder_run}")
