"""The decoder's deblocking filter (codec/pipeline/deblock.py): what it does to real photos and to the latent grid.

    python bench/deblock.py [--images 24] [--data ../shared/data/kodak] [--qualities 0,30,60,100]
                            [--params auto 8,4,8 8,3,4 ...] [-o bench/results/deblock.json]

Each image is coded once per quality (real files, the shipped flagship) and decoded without the filter; every
parameter set (alpha,beta,flat in grey levels; ``auto``: what a decoder does at that quality, the format's
rate schedule ``deblock.STRENGTH`` after the ramp filter where encoders ask for it, format version 6;
``noramp``: the same without the ramp filter, as version 5) is then applied to the same decoded pixels. Reported per quality
and set: the mean PSNR change on the photos (RGB, 8 bits) and its worst image, and the latent-grid ratio of
the three smooth test images of bench/smooth_grid.py (issue 19: at most 1.2 at q 0, 50 and 100). Pick
parameters on training photos (--data ../shared/data/train) and report them on Kodak.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse)) if mse else 99.0


def main():
    import neuralcodec
    from neuralcodec.pipeline.deblock import deblock, ramp, ramp_wanted, thresholds
    from neuralcodec.rate import rate_of_quality
    from smooth_grid import grid_ratio, smooth_images

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "kodak")
    ap.add_argument("--qualities", default="0,30,60,100")
    ap.add_argument("--params", nargs="+", default=["auto"], help="alpha,beta,flat sets to compare, auto or noramp")
    ap.add_argument("--max-side", type=int, default=768, help="centre-crop bigger photos to this side")
    ap.add_argument("-o", "--output", type=Path, default=HERE / "results" / "deblock.json")
    args = ap.parse_args()
    sets = [p if p in ("auto", "noramp") else tuple(int(v) for v in p.split(",")) for p in args.params]
    paths = sorted(p for p in args.data.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[: args.images]
    photos = []
    for p in paths:
        a = np.asarray(Image.open(p).convert("RGB"))
        h, w = a.shape[:2]
        r0, c0 = max(0, (h - args.max_side) // 2), max(0, (w - args.max_side) // 2)
        photos.append((p.stem, a[r0:r0 + args.max_side, c0:c0 + args.max_side]))
    smooth = smooth_images()
    out = {"data": str(args.data), "images": [n for n, _ in photos], "params": [s if isinstance(s, str) else list(s) for s in sets], "rows": []}
    for q in (float(v) for v in args.qualities.split(",")):
        decoded = [(n, a, np.array(neuralcodec.decompress(neuralcodec.compress(a, q), deblock=False)))
                   for n, a in photos]
        grid_dec = [(a, np.array(neuralcodec.decompress(neuralcodec.compress(a, q), deblock=False))) for a in smooth]
        for s in sets:
            alpha, beta, flat = thresholds(rate_of_quality(q)) if isinstance(s, str) else s
            ramped = s == "auto" and ramp_wanted(16, rate_of_quality(q), *photos[0][1].shape[:2])  # photos: big

            def filtered(d):
                return deblock(ramp(d.copy()) if ramped else d.copy(), alpha=alpha, beta=beta, flat=flat)

            deltas, secs = [], []
            for n, a, d in decoded:
                t0 = time.perf_counter()
                f = filtered(d)
                secs.append(time.perf_counter() - t0)
                deltas.append(psnr(f, a) - psnr(d, a))
            grid = [grid_ratio(filtered(d)) for _, d in grid_dec]
            row = {"quality": q, "params": [s, alpha, beta, flat] + (["ramp"] if ramped else []) if isinstance(s, str) else list(s), "psnr_change_mean": round(float(np.mean(deltas)), 4),
                   "psnr_change_worst": round(float(np.min(deltas)), 4), "worst_image": decoded[int(np.argmin(deltas))][0],
                   "psnr_unfiltered_mean": round(float(np.mean([psnr(d, a) for _, a, d in decoded])), 3),
                   "grid_ratio": [round(g, 3) for g in grid],
                   "grid_ratio_unfiltered": [round(grid_ratio(d), 3) for _, d in grid_dec],
                   "filter_ms_median": round(1000 * float(np.median(secs)), 1)}
            out["rows"].append(row)
            print(f"q {q:5.1f} {row['params']}: PSNR {row['psnr_change_mean']:+.4f} dB (worst {row['psnr_change_worst']:+.4f}, "
                  f"{row['worst_image']}), grid {row['grid_ratio_unfiltered']} -> {row['grid_ratio']}, "
                  f"{row['filter_ms_median']} ms", flush=True)
    args.output.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
