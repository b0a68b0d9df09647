"""RD gained per training step, from the shipped weights' cards, and what reaching AVIF would cost (issue 3).

Every flagship weights file in weights/ carries its Kodak curve (measured by bench/kodak_rd.py) and its total
training steps. This script computes each one's BD-rate (PSNR) against the measured anchors and projects the steps, and CPU
hours at a given step time, at which two fits cross the targets:
- log-linear (optimistic): the BD-rate against AVIF as a line in log10(steps), gaining the same per tenfold
  steps forever;
- saturating (the usual shape of a training curve): the gap to what the same architecture reaches fully
  trained (ASYMPTOTE below) shrinks as a power of the steps, a line in log(gap) against log(steps). A target
  beyond the asymptote is out of this architecture's reach at any step count.
Projections from a few points, not promises: read them as orders of magnitude.
Beside them, the same BD-rates of fully trained published models (CompressAI's zoo measured on this machine kind,
papers): what the flagship's architecture, a mean-scale hyperprior, reaches when trained to the end.

    python bench/training_trend.py [--step-seconds 0.92] [--extra runs/eval-s9/neuralcodec.json:45570]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from neuralcodec.evaluation.rd import bd_rate, load_anchor

ROOT = Path(__file__).resolve().parent.parent
ANCHORS = ROOT.parent / "shared" / "data" / "anchors" / "kodak"
NAMES = {"jpeg": "measured-jpeg-turbo", "webp": "measured-webp-m6", "avif": "measured-avif-444-s6"}
TARGETS = (0.0, -10.0)  # issue 3: BD-rate vs AVIF <= 0 %, then <= -10 %
ASYMPTOTE = "mbt2018-mean-vbr-ans"  # the flagship's architecture (variable-rate mean-scale hyperprior) fully trained
# Fully trained published models (GPU, CompressAI's zoo run on the CPU here): what the architecture reaches
REFERENCES = ("compressai-bmshj2018-hyperprior_mse_cpu", "compressai-mbt2018-mean_mse_cpu", "mbt2018-mean-vbr-ans",
              "paper-minnen2018-checkerboard_mse", "compressai-cheng2020-anchor_mse_cpu")


def shipped_points() -> list[tuple[str, int, dict]]:
    """(file, total steps, Kodak curve) of every flagship weights card in weights/."""
    out = []
    for card in sorted((ROOT / "weights").glob("flagship*.json")):
        c = json.loads(card.read_text())
        if (c.get("decodes") and not c.get("decoder_only")) or "kodak" not in c:  # a perceptual decoder, or weights never measured
            continue
        out.append((card.stem, int(c.get("steps_total", c["steps"])), c["kodak"]["curve"]))
    return sorted(out, key=lambda p: p[1])


def finite(value: float) -> float | None:
    """JSON has no infinity: a target never reached is null."""
    return None if np.isinf(value) else float(value)


def cost(steps: float, step_seconds: float) -> str:
    if np.isinf(steps):
        return "never (beyond what the fit reaches)"
    return f"~{steps:,.3g} steps (~{steps * step_seconds / 3600:,.0f} CPU h)"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--step-seconds", type=float, default=0.92, help="seconds per training step on this machine (measured 2026-11-28)")
    ap.add_argument("--extra", action="append", default=[], metavar="EVAL.json:STEPS",
                    help="an unshipped curve (neuralcodec eval's JSON) and its total steps")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "bench" / "results" / "training_trend.json")
    args = ap.parse_args()
    points = shipped_points()
    for e in args.extra:
        path, steps = e.rsplit(":", 1)
        points.append((Path(path).parent.name, int(steps), load_anchor(path)))
    points.sort(key=lambda p: p[1])
    if len({p[1] for p in points}) < 2:
        raise SystemExit(f"a trend needs curves at two step counts at least; found {len(points)}")
    anchors = {k: load_anchor(ANCHORS / f"{v}.json") for k, v in NAMES.items()}
    rows = []
    print("| weights | steps | BD vs JPEG | vs WebP | vs AVIF |\n|---|---|---|---|---|")
    for name, steps, curve in points:
        bd = {k: bd_rate(a["bpp"], a["psnr-rgb"], curve["bpp"], curve["psnr-rgb"]) for k, a in anchors.items()}
        rows.append({"weights": name, "steps": steps, "bd_rate_psnr": bd})
        print(f"| {name} | {steps:,} | {bd['jpeg']:+.2f} % | {bd['webp']:+.2f} % | {bd['avif']:+.2f} % |")
    refs = []
    for name in REFERENCES:
        curve = load_anchor(ANCHORS / f"{name}.json")
        bd = {k: bd_rate(a["bpp"], a["psnr-rgb"], curve["bpp"], curve["psnr-rgb"]) for k, a in anchors.items()}
        refs.append({"anchor": name, "bd_rate_psnr": bd})
        print(f"| {name} (fully trained) | | {bd['jpeg']:+.1f} % | {bd['webp']:+.1f} % | {bd['avif']:+.1f} % |")
    x = np.log10([r["steps"] for r in rows])
    y = np.array([r["bd_rate_psnr"]["avif"] for r in rows])
    slope, intercept = np.polyfit(x, y, 1)
    floor = next(r["bd_rate_psnr"]["avif"] for r in refs if r["anchor"] == ASYMPTOTE)
    power, log_scale = np.polyfit(x, np.log10(y - floor), 1) if (y > floor).all() else (0.0, 0.0)
    proj = {}
    for target in TARGETS:
        linear = 10 ** ((target - intercept) / slope) if slope < 0 else float("inf")
        saturating = 10 ** ((np.log10(target - floor) - log_scale) / power) if target > floor and power < 0 else float("inf")
        proj[f"{target:g}"] = {"steps": finite(linear), "cpu_hours": finite(linear * args.step_seconds / 3600),
                               "saturating_steps": finite(saturating),
                               "saturating_cpu_hours": finite(saturating * args.step_seconds / 3600)}
        print(f"BD vs AVIF {target:+g} %: log-linear {cost(linear, args.step_seconds)}; "
              f"saturating {cost(saturating, args.step_seconds)} (at {args.step_seconds} s/step)")
    print(f"log-linear fit: BD vs AVIF = {intercept:.1f} {slope:+.1f} * log10(steps)  (points per 10x steps: {slope:+.1f})")
    print(f"saturating fit: BD vs AVIF = {floor:.1f} + 10^{log_scale:.2f} * steps^{power:.3f}  "
          f"(asymptote: {ASYMPTOTE}, fully trained)")
    args.output.write_text(json.dumps({"points": rows, "references": refs, "fit": {"slope_per_decade": slope, "intercept": intercept},
                                       "saturating_fit": {"asymptote": floor, "asymptote_model": ASYMPTOTE,
                                                          "power": power, "log10_scale": log_scale},
                                       "step_seconds": args.step_seconds, "projection": proj}, indent=1) + "\n")


if __name__ == "__main__":
    main()
