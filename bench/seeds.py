"""The seed designs at an equal CPU budget (issue 7): train, export, evaluate on Kodak, tabulate.

Every model gets the same wall-clock budget on this 2-core machine (default 30 minutes). A fixed-rate model
spends it on three operating points (a third each: λ 0.004 / 0.013 / 0.045, or 2 / 4 / 8 index groups for
vqvae), which make its RD curve; the flagship architecture spends it on one variable-rate run from scratch.
GAN variants run their adversarial stage inside the budget (the recipe's gan_start is a fraction of it);
lighthp's perceptual decoder is a further decoder-only GAN fine-tune of its middle point (a sixth of the
budget, reported apart). Resumable: finished points are skipped, an interrupted one resumes its checkpoint.

    python bench/seeds.py                          # everything: ~3.5 h at 30 minutes per model
    python bench/seeds.py --archs lighthp --minutes 15
    python bench/seeds.py --table                  # only rebuild docs/models.md from the results

Runs live in runs/seeds/ (outside git); results in bench/results/seeds/; the table in docs/models.md.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"
RUNS = ROOT / "runs" / "seeds"
RESULTS = HERE / "results" / "seeds"
LAMBDAS = (0.004, 0.013, 0.045)
ARCHS = ("resgdn", "lighthp", "dcuvae", "hvae", "betavae", "vqvae", "modhp")
JPEG = SHARED / "anchors" / "kodak" / "measured-jpeg-turbo.json"
GAN = {"hvae", "betavae", "vqvae"}


def points(arch: str) -> list[tuple[str, dict]]:
    """(label, model-config overrides) of each operating point of ``arch``."""
    if arch == "modhp":
        return [("vr", {})]
    if arch == "vqvae":
        return [(f"g{g}", {"groups": g}) for g in (2, 4, 8)]
    if arch == "betavae":
        return [(f"l{lm:g}", {"beta": 1 / (lm * 255**2)}) for lm in LAMBDAS]
    return [(f"l{lm:g}", {"lmbda": lm}) for lm in LAMBDAS]


def train_point(arch: str, label: str, overrides: dict, minutes: float, threads: int) -> Path:
    from neuralcodec.train.loop import Recipe, default_recipe, export_run, train

    out = RUNS / f"{arch}-{label}.safetensors"
    if out.exists():
        return out
    r = Recipe.load(default_recipe(arch))
    r = replace(r, model={**r.model, **overrides}, budget_minutes=minutes, checkpoint_minutes=5.0, threads=threads)
    if arch == "modhp":
        r = replace(r, steps=10_000, decay_start=7_000, warmup=200)  # a schedule read as fractions of the budget
    else:
        r = replace(r, steps=10_000, decay_start=7_000, gan_start=6_000 if arch in GAN else 0)
    if not train(r, RUNS / f"{arch}-{label}", progress=False):
        raise SystemExit("stopped by a signal; rerun to resume")
    export_run(RUNS / f"{arch}-{label}", out, f"bench/seeds.py: {minutes:g} minutes, {threads} CPU thread(s)")
    return out


def perceptual(minutes: float, threads: int) -> Path | None:
    """lighthp's decoder-only GAN fine-tune of its middle point (decodes the same files)."""
    from neuralcodec.train.loop import Recipe, default_recipe, export_run, train

    base = RUNS / f"lighthp-l{LAMBDAS[1]:g}.safetensors"
    out = RUNS / "lighthp-perceptual.safetensors"
    if out.exists() or not base.exists():
        return out if out.exists() else None
    r = Recipe.load(default_recipe("lighthp"))
    r = replace(r, model={**r.model, "lmbda": LAMBDAS[1]}, budget_minutes=minutes, lr=5e-5, warmup=50,
                steps=10_000, decay_start=10_000, gan_weight=0.01, gan_start=1000, train_only=["g_s."], threads=threads)
    if not train(r, RUNS / "lighthp-perceptual", init_weights=str(base), progress=False):
        raise SystemExit("stopped by a signal; rerun to resume")
    export_run(RUNS / "lighthp-perceptual", out, "decoder-only GAN fine-tune", decodes=str(base))
    return out


def evaluate_arch(arch: str, weights: list[Path], limit: int | None) -> dict:
    from neuralcodec.evaluation.evaluate import evaluate

    anchors = [JPEG]
    flagship = RESULTS / "modhp" / "neuralcodec.json"
    if arch != "modhp" and flagship.exists():
        anchors.append(flagship)
    qualities = (0, 20, 40, 60, 80, 100)
    return evaluate(SHARED / "kodak", RESULTS / arch, qualities, [], anchors, [str(w) for w in weights], limit,
                    progress=False)


def training_summary(arch: str) -> dict:
    """Steps and wall seconds of each of ``arch``'s points, from their cards in runs/seeds/ (kept in results)."""
    out = {}
    for label, _ in points(arch):
        card = RUNS / f"{arch}-{label}.json"
        if card.exists():
            c = json.loads(card.read_text())
            out[label] = {"steps": c.get("steps"), "train_wall_seconds": c.get("train_wall_seconds"),
                          "recipe": c.get("recipe")}
    return out


def table() -> str:
    macs = {r["arch"]: r for r in json.loads((HERE / "results" / "macs.json").read_text())}
    rows = ["| model | steps per point | bpp range | PSNR range (dB) | BD-rate vs JPEG (PSNR / MS-SSIM) | "
            "vs flagship arch., equal budget (PSNR / MS-SSIM) | MAC/px enc / dec | parameters | enc / dec s |",
            "|---|---|---|---|---|---|---|---|---|"]
    for arch in ARCHS:
        f = RESULTS / arch / "neuralcodec.json"
        if not f.exists():
            continue
        rep = json.loads(f.read_text())
        r, bd = rep["results"], rep.get("bd_rate", {})
        jpeg, flag = bd.get(JPEG.stem, {}), bd.get("neuralcodec", {})
        tr = RESULTS / arch / "training.json"
        steps = "/".join(str(v["steps"]) for v in json.loads(tr.read_text()).values()) if tr.exists() else "?"

        def pair(d):
            vals = [d[k] for k in ("psnr", "ms-ssim") if k in d]
            if not vals:
                return "—"
            return " / ".join("no overlap" if v != v else f"{v:+.1f} %" for v in vals)  # NaN: disjoint curves
        m = macs.get(arch, {})
        rows.append(f"| `{arch}` | {steps} | {min(r['bpp']):.2f}–{max(r['bpp']):.2f} | "
                    f"{min(r['psnr-rgb']):.1f}–{max(r['psnr-rgb']):.1f} | {pair(jpeg)} | "
                    f"{pair(flag) if arch != 'modhp' else 'reference'} | "
                    f"{m.get('encoder_macs_per_px', 0) / 1e3:.1f}k / {m.get('decoder_macs_per_px', 0) / 1e3:.1f}k | "
                    f"{m.get('params', 0) / 1e6:.2f} M | {min(r['enc_s']):.2f} / {min(r['dec_s']):.2f} |")
    return "\n".join(rows) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--minutes", type=float, default=30.0, help="CPU budget per model (all its points together)")
    ap.add_argument("--threads", type=int, default=2, help="training threads; 1 leaves a core to the flagship's run "
                    "(bench/experiments/pilot.py: 0.92 s/step at 1 thread, 0.48 at 2); give every model the same")
    ap.add_argument("--limit", type=int, default=None, help="Kodak images to evaluate (default all 24)")
    ap.add_argument("--table", action="store_true", help="only rebuild the table")
    ap.add_argument("--redo", action="store_true", help="train and measure models whose results exist too")
    ap.add_argument("--summarize", action="store_true", help="record the training summaries of finished points")
    a = ap.parse_args()
    archs = [x for x in a.archs.split(",") if x]
    if a.summarize:
        for arch in archs:
            if (RESULTS / arch).is_dir() and training_summary(arch):
                (RESULTS / arch / "training.json").write_text(json.dumps(training_summary(arch), indent=1) + "\n")
    if not a.table and not a.summarize:
        RUNS.mkdir(parents=True, exist_ok=True)
        for arch in sorted(archs, key=lambda x: x != "modhp"):  # the flagship first: the others compare to it
            if (RESULTS / arch / "neuralcodec.json").exists() and not a.redo:
                print(f"{arch}: measured already ({RESULTS / arch}); --redo to train and measure again")
                continue
            pts = points(arch)
            weights = [train_point(arch, label, o, a.minutes / len(pts), a.threads) for label, o in pts]
            (RESULTS / arch).mkdir(parents=True, exist_ok=True)
            (RESULTS / arch / "training.json").write_text(json.dumps(training_summary(arch), indent=1) + "\n")
            s = evaluate_arch(arch, weights, a.limit)
            print(arch, json.dumps(s["bd_rate"]), flush=True)
            if arch == "lighthp":
                perceptual(a.minutes / 6, a.threads)
    print(table())
    doc = ROOT / "docs" / "models.md"
    if doc.exists() and any((RESULTS / arch / "neuralcodec.json").exists() for arch in ARCHS):
        text = doc.read_text()
        start, end = text.index("<!-- table -->"), text.index("<!-- /table -->")
        doc.write_text(text[: start + len("<!-- table -->")] + "\n" + table() + text[end:])


if __name__ == "__main__":
    main()
