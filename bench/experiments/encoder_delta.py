"""Carry encoder-only runs' change of the analysis onto other weights (task arithmetic on the moving averages).

    python bench/experiments/encoder_delta.py runs/soup-jk3 runs/enc1 --base flagship -o runs/soup-jk3-enc
    python bench/experiments/encoder_delta.py runs/soup-jk5 runs/enc2 runs/enc3 --base W -o runs/soup-jk5-enc
    neuralcodec export runs/soup-jk3-enc -o runs/soup-jk3-enc.safetensors --prior-bits 8
    python bench/experiments/encoder_delta.py runs/soup-jk6 runs/ench --top-from 0.5 -o runs/soup-jk6-top
    python bench/experiments/encoder_delta.py base runs/ench --top-from 0.5 -o runs/flagship-top

An encoder-only run (recipe ``train_only``: g_a, h_a, mod_a) from the shipped ``--base`` weights learns a change of
the analysis against that decoder; joint arms from the same weights move the decoder a little at the same time.
The output run directory is the target run's (recipe, log, checkpoint) with its moving average's analysis
parameters plus the encoder runs' change (the mean over the runs of their moving average minus ``--base``): the
analysis change made for the old decoder, applied beside the new one. Several encoder runs from the same base
(other seeds or learning rates) give the mean of their changes, a soup of encoders. Whether it still helps there
is for the Kodak curve to say (bench/kodak_rd.py).

``--top-from T``: the change goes onto a second analysis instead, which encodes the rates t >= T alone (the model's
``top_from``: its own g_a, h_a and mod_a, ``top.*``); the target's analysis stays as it is for the rates below. For
an encoder run that trained the top rates only (recipe ``high_t_share`` 1.0: t from [0.5, 1)), whose change costs
the rates it never saw. The output's recipe names the model with ``top_from``; its optimizer state is dropped.

Checked first (also alone with --check, as bench/soup_arms.sh does before it stops any run): each encoder run is
encoder-only, all train the same parameters of the same model, every parameter a run does not train still equals
--base's (so the decoder it trained against is the base's; the analysis it started from is not checked: pass the
weights the runs were started with), and the target's recipe names the same model.
"""
import argparse
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from neuralcodec.models import build
from neuralcodec.train.loop import Recipe
from neuralcodec.zoo import weights_io

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("target", help="run directory whose moving average gets the change ('-' with --check: none; "
                "'base': --base's weights themselves, e.g. with --top-from: the shipped weights plus a top analysis)")
ap.add_argument("encoder_runs", type=Path, nargs="+", metavar="ENCODER_RUN",
                help="encoder-only runs from --base (their recipes' train_only names what moved); several: their mean "
                "change")
ap.add_argument("--base", default="flagship", help="the weights the encoder runs started from")
ap.add_argument("-o", "--out", type=Path)
ap.add_argument("--check", action="store_true", help="only check the runs and their base (see above)")
ap.add_argument("--top-from", type=float, metavar="T",
                help="put the change on a new analysis of its own for the rates t >= T (see above)")
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
analysis = build(recipe.arch, **recipe.model).analysis_modules
for run, r in zip(a.encoder_runs, recipes):
    if not r.train_only:
        raise SystemExit(f"{run} trained everything: not an encoder-only run")
    if not all(prefix.startswith(analysis) for prefix in r.train_only):
        raise SystemExit(f"{run} trained {r.train_only}: more than the analysis ({', '.join(analysis)})")
    if not r.ema_decay:
        raise SystemExit(f"{run} keeps no moving average (ema_decay 0)")
    if (r.arch, r.model) != (recipe.arch, recipe.model):
        raise SystemExit(f"{run} and {a.encoder_runs[0]} are different models")
    if sorted(r.train_only) != sorted(recipe.train_only):
        raise SystemExit(f"{run} and {a.encoder_runs[0]} train different parameters (train_only)")
target_model = recipe.model
on_base = a.target == "base"
if a.target not in ("-", "base"):
    t = recipe_of(a.target)
    target_model = t.model
    plain = lambda m: {k: v for k, v in m.items() if k != "top_from"}  # noqa: E731
    if (t.arch, plain(t.model)) != (recipe.arch, plain(recipe.model)) or (
            recipe.model.get("top_from") is not None and t.model != recipe.model):
        raise SystemExit(f"{a.target} and {a.encoder_runs[0]} are different models")
    if a.top_from is not None and t.model.get("top_from") is not None:
        raise SystemExit(f"{a.target} already has a top analysis (top_from {t.model['top_from']})")
if a.top_from is not None:
    if recipe.model.get("top_from") is not None:
        raise SystemExit(f"the encoder runs' model already has a top analysis (top_from {recipe.model['top_from']})")
    try:
        out_model = build(recipe.arch, **{**recipe.model, "top_from": a.top_from})
    except (TypeError, ValueError) as e:
        raise SystemExit(f"--top-from {a.top_from}: {e}")
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
if on_base:  # the base as a run: its weights as the moving average and the raw weights, the first run's recipe
    model = build(recipe.arch, **recipe.model)
    if extra := [k for k in model.load_state_dict(base, strict=False).unexpected_keys
                 if not k.startswith(model.training_only)]:
        raise SystemExit(f"{a.base} has parameters the runs' model lacks ({extra[0]}): not their model's weights")
    target = {"model": model.state_dict(), "ema": [base[n].clone() for n, _ in params], "step": 0,
              "ema_desc": f"the weights {a.base}"}
    shown, a.target = f"{a.base} (the weights)", a.encoder_runs[0]  # whose recipe (the model's) and log it carries
else:
    shown = a.target
    try:
        target = torch.load(Path(a.target) / "last.pt", map_location="cpu", weights_only=False)
    except (OSError, RuntimeError) as e:
        raise SystemExit(f"{a.target}: no readable checkpoint ({e})")
target_params = list(build(recipe.arch, **target_model).named_parameters())  # the runs' model, maybe with a top
if len(target["ema"]) != len(target_params) or any(e.shape != p.shape for e, (_, p) in zip(target["ema"], target_params)):
    raise SystemExit(f"{a.target}'s parameters are not its recipe's model's")
runs_index = {name: i for i, (name, _) in enumerate(params)}
index = {name: i for i, (name, _) in enumerate(target_params)}  # the target's (a top analysis, if it has one, is left
# as it is: the runs' names are the main analysis')


def changed_value(name: str) -> torch.Tensor:
    """The target's ``name`` plus the encoder runs' mean change of it."""
    i, j = index[name], runs_index[name]
    change = sum(ema[j].float() - base[name] for ema, _ in encoders) / len(encoders)
    return (target["ema"][i].float() + change).to(target["ema"][i].dtype)


changed = 0
if a.top_from is None:
    for name, i in index.items():
        if name.startswith(trained):
            target["ema"][i] = changed_value(name)
            changed += target["ema"][i].numel()
else:  # the same parameters, then the top analysis: the target's analysis with the change
    ema = []
    for name, _ in out_model.named_parameters():
        low = name.removeprefix("top.")
        if name != low and low.startswith(trained):
            ema.append(changed_value(low))
            changed += ema[-1].numel()
        else:
            ema.append(target["ema"][index[low]].clone())
    raw = build(recipe.arch, **recipe.model)
    raw.load_state_dict(target["model"])
    missing, unexpected = out_model.load_state_dict(raw.state_dict(), strict=False)
    assert all(k.startswith("top.") for k in missing) and not unexpected, (missing, unexpected)
    out_model.init_top()  # the last step's weights: one analysis at every rate
    target = {"model": out_model.state_dict(), "ema": ema, "step": target["step"],
              "ema_desc": target.get("ema_desc")}  # Adam's moments fit the old parameters only: dropped
    if target["ema_desc"] is None:
        del target["ema_desc"]
target.pop("slow_ema", None)  # the output holds one average, the one with the change
runs = " and ".join(f"{run} at step {step}" for run, (_, step) in zip(a.encoder_runs, encoders))
mean = ", the mean of their changes" if len(encoders) > 1 else ""
where = "" if a.top_from is None else f" as the analysis of the rates t >= {a.top_from:g}"
target["ema_desc"] = (f"{target.get('ema_desc', f'the exponential moving average of {a.target}')}, plus the analysis "
                      f"change of the encoder-only run{'s' if len(encoders) > 1 else ''} {runs} (from {a.base}{mean})"
                      + where)
a.out.mkdir(parents=True, exist_ok=True)
out_recipe = recipe_of(a.target)
if on_base:  # the runs' model, not their training: no encoder-only restriction, no top-only sampling, no log
    out_recipe.train_only, out_recipe.high_t_share = [], 0.0
else:
    shutil.copy(Path(a.target) / "log.jsonl", a.out / "log.jsonl")
if a.top_from is not None:
    out_recipe.model = {**out_recipe.model, "top_from": a.top_from}
(a.out / "recipe.json").write_text(json.dumps(asdict(out_recipe), indent=1))
torch.save(target, a.out / "last.pt")
print(f"{a.out}: {shown}'s moving average with {changed:,} analysis parameters moved as in "
      f"{' and '.join(map(str, a.encoder_runs))}{' (the mean change)' if len(encoders) > 1 else ''}{where}")
