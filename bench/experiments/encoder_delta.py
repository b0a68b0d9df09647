"""Carry encoder-only runs' change of the analysis onto other weights (task arithmetic on the moving averages).

    python bench/experiments/encoder_delta.py runs/soup-jk3 runs/enc1 --base flagship -o runs/soup-jk3-enc
    python bench/experiments/encoder_delta.py runs/soup-jk5 runs/enc2 runs/enc3 --base W -o runs/soup-jk5-enc
    neuralcodec export runs/soup-jk3-enc -o runs/soup-jk3-enc.safetensors --prior-bits 8

An encoder-only run (recipe ``train_only``: g_a, h_a, mod_a) from the shipped ``--base`` weights learns a change of
the analysis against that decoder; joint arms from the same weights move the decoder a little at the same time.
The output run directory is the target run's (recipe, log, checkpoint) with its moving average's analysis
parameters plus the encoder runs' change (the mean over the runs of their moving average minus ``--base``): the
analysis change made for the old decoder, applied beside the new one. Several encoder runs from the same base
(other seeds or learning rates) give the mean of their changes, a soup of encoders. Whether it still helps there
is for the Kodak curve to say (bench/kodak_rd.py).

Checked first (also alone with --check, as bench/soup_arms.sh does before it stops any run): each encoder run is
encoder-only, all train the same parameters of the same model, every parameter a run does not train still equals
--base's (so the decoder it trained against is the base's; the analysis it started from is not checked: pass the
weights the runs were started with), and the target's recipe names the same model.
"""
import argparse
import shutil
from pathlib import Path

import torch

from neuralcodec.models import build
from neuralcodec.train.loop import Recipe
from neuralcodec.zoo import weights_io

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("target", help="run directory whose moving average gets the change ('-' with --check: none)")
ap.add_argument("encoder_runs", type=Path, nargs="+", metavar="ENCODER_RUN",
                help="encoder-only runs from --base (their recipes' train_only names what moved); several: their mean "
                "change")
ap.add_argument("--base", default="flagship", help="the weights the encoder runs started from")
ap.add_argument("-o", "--out", type=Path)
ap.add_argument("--check", action="store_true", help="only check the runs and their base (see above)")
a = ap.parse_args()
if not (a.check or a.out):
    ap.error("-o/--out is required")
if a.target == "-" and not a.check:
    ap.error("TARGET '-' is for --check only")
if len({run.resolve() for run in a.encoder_runs}) != len(a.encoder_runs):
    raise SystemExit("an encoder run is named twice")


def recipe_of(run) -> Recipe:
    try:
        return Recipe.load(Path(run) / "recipe.json")
    except (OSError, ValueError, TypeError) as e:
        raise SystemExit(f"{run}: no readable recipe.json ({e})")


recipes = [recipe_of(run) for run in a.encoder_runs]
recipe = recipes[0]
for run, r in zip(a.encoder_runs, recipes):
    if not r.train_only:
        raise SystemExit(f"{run} trained everything: not an encoder-only run")
    if not r.ema_decay:
        raise SystemExit(f"{run} keeps no moving average (ema_decay 0)")
    if (r.arch, r.model) != (recipe.arch, recipe.model):
        raise SystemExit(f"{run} and {a.encoder_runs[0]} are different models")
    if sorted(r.train_only) != sorted(recipe.train_only):
        raise SystemExit(f"{run} and {a.encoder_runs[0]} train different parameters (train_only)")
if a.target != "-":
    t = recipe_of(a.target)
    if (t.arch, t.model) != (recipe.arch, recipe.model):
        raise SystemExit(f"{a.target} and {a.encoder_runs[0]} are different models")
try:
    base = weights_io.load_state_dict(a.base)  # what `train --init-weights` started from; refuses archives
except Exception as e:
    raise SystemExit(f"the encoder runs' base {a.base} ({e}): give the weights they started from")
params = list(build(recipe.arch, **recipe.model).named_parameters())
trained = tuple(recipe.train_only)
if missing := [n for n, p in params if n not in base or base[n].shape != p.shape]:
    raise SystemExit(f"{a.base} is not this model's weights ({missing[0]} and {len(missing) - 1} more differ)")


def fits(ema) -> bool:
    return len(ema) == len(params) and all(e.shape == p.shape for e, (_, p) in zip(ema, params))


encoders = []  # (moving average, step) of each run; the rest of a checkpoint (Adam's moments) is dropped
for run in a.encoder_runs:
    try:
        state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    except (OSError, RuntimeError) as e:
        raise SystemExit(f"{run}: no readable checkpoint ({e})")
    ema = state["ema"]
    if not fits(ema):
        raise SystemExit(f"{run}'s parameters are not this model's")
    moved = [n for e, (n, _) in zip(ema, params) if not n.startswith(trained) and not torch.equal(e.float(), base[n])]
    if moved:
        raise SystemExit(f"{run} did not start from {a.base}: {moved[0]} (not trained) differs")
    encoders.append((ema, state["step"]))
    del state
if a.check:
    raise SystemExit(0)
try:
    target = torch.load(Path(a.target) / "last.pt", map_location="cpu", weights_only=False)
except (OSError, RuntimeError) as e:
    raise SystemExit(f"{a.target}: no readable checkpoint ({e})")
if not fits(target["ema"]):
    raise SystemExit(f"{a.target}'s parameters are not this model's")
changed = 0
for i, (name, _) in enumerate(params):
    if name.startswith(trained):
        change = sum(ema[i].float() - base[name] for ema, _ in encoders) / len(encoders)
        target["ema"][i] = (target["ema"][i].float() + change).to(target["ema"][i].dtype)
        changed += change.numel()
target.pop("slow_ema", None)  # the output holds one average, the one with the change
runs = " and ".join(f"{run} at step {step}" for run, (_, step) in zip(a.encoder_runs, encoders))
mean = ", the mean of their changes" if len(encoders) > 1 else ""
target["ema_desc"] = (f"{target.get('ema_desc', f'the exponential moving average of {a.target}')}, plus the analysis "
                      f"change of the encoder-only run{'s' if len(encoders) > 1 else ''} {runs} (from {a.base}{mean})")
a.out.mkdir(parents=True, exist_ok=True)
for name in ("recipe.json", "log.jsonl"):
    shutil.copy(Path(a.target) / name, a.out / name)
torch.save(target, a.out / "last.pt")
print(f"{a.out}: {a.target}'s moving average with {changed:,} analysis parameters moved as in "
      f"{' and '.join(map(str, a.encoder_runs))}{' (the mean change)' if len(encoders) > 1 else ''}")
