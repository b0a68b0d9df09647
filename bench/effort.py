"""What each encoder effort level (`neuralcodec compress -e 0..9`) buys on Kodak, and what it costs.

    python bench/effort.py [--weights flagship] [--images 6] [--qualities 10,30,50,70,90] [--efforts 0,1,2,...]
                           [--crop 256]

For every image and quality: a real file at each effort (bpp = 8 * file bytes / pixels), PSNR on RGB at 8 bits
after a real decode, and the encode seconds (torch backend for every level, so the ratios compare refinement
alone). Per effort: the mean curve, BD-rate against effort 0 (pchip in log rate, as `neuralcodec eval`), and the
median encode-time ratio to effort 0. ``--crop`` codes the centre crop of each image (a quick look; the README
table uses whole images). Results go to bench/results/effort.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import neuralcodec
from neuralcodec.evaluation.rd import bd_rate

ROOT = Path(__file__).resolve().parent.parent
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--images", type=int, default=6, help="first N Kodak images")
    ap.add_argument("--qualities", default="10,30,50,70,90")
    ap.add_argument("--efforts", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--crop", type=int, default=0, help="centre crop of this side (0: whole images)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "bench" / "results" / "effort.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    qualities = [float(q) for q in args.qualities.split(",")]
    steps = sorted({0, *(int(s) for s in args.efforts.split(","))})
    images = sorted(KODAK.glob("*.png"))[: args.images]
    rows = []  # (steps, quality, image, bpp, psnr, encode seconds)
    for path in images:
        img = np.asarray(Image.open(path).convert("RGB"))
        if args.crop:
            r0, c0 = max(0, (img.shape[0] - args.crop) // 2), max(0, (img.shape[1] - args.crop) // 2)
            img = np.ascontiguousarray(img[r0:r0 + args.crop, c0:c0 + args.crop])
        px = img.shape[0] * img.shape[1]
        for q in qualities:
            for s in steps:
                t0 = time.perf_counter()
                data = neuralcodec.compress(img, q, weights=args.weights, effort=s, backend="torch")
                enc = time.perf_counter() - t0
                out = np.asarray(neuralcodec.decompress(data, weights=args.weights)).astype(np.float64)
                psnr = 10 * np.log10(255**2 / ((out - img) ** 2).mean())
                rows.append((s, q, path.stem, 8 * len(data) / px, psnr, enc))
                print(f"{path.stem} q={q:g} effort={s}: {8 * len(data) / px:.4f} bpp {psnr:.3f} dB {enc:.1f} s",
                      flush=True)
    from neuralcodec.pipeline.refine import EFFORTS

    summary = {"weights": args.weights or "flagship", "images": [p.stem for p in images], "threads": args.threads,
               "crop": args.crop, "qualities": qualities, "efforts": {str(k): v for k, v in EFFORTS.items()},
               "by_effort": {}}
    base = _curve(rows, 0, qualities)
    for s in steps:
        c = _curve(rows, s, qualities)
        ratios = [r[5] / b[5] for r in rows if r[0] == s for b in rows if b[0] == 0 and b[1:3] == r[1:3]]
        c["bd_rate_vs_effort0_percent"] = round(bd_rate(base["bpp"], base["psnr"], c["bpp"], c["psnr"]), 2)
        c["median_encode_time_ratio"] = round(statistics.median(ratios), 1)
        summary["by_effort"][str(s)] = c
        print(f"effort {s}: BD-rate vs effort 0 {c['bd_rate_vs_effort0_percent']:+.2f} %, encode time x"
              f"{c['median_encode_time_ratio']} (median), curve " +
              "  ".join(f"{b:.3f}/{p:.2f}" for b, p in zip(c["bpp"], c["psnr"])))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({**summary, "rows": rows}, indent=1) + "\n")


def _curve(rows, s, qualities):
    def mean(q, i):
        return statistics.fmean(r[i] for r in rows if r[0] == s and r[1] == q)

    return {"bpp": [round(mean(q, 3), 5) for q in qualities], "psnr": [round(mean(q, 4), 4) for q in qualities],
            "encode_s": [round(mean(q, 5), 2) for q in qualities]}


if __name__ == "__main__":
    main()
