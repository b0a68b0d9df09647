"""Does the codec draw its 16-px latent grid on smooth content?

    python bench/smooth_grid.py [--weights flagship] [--qualities 0,50,100] [--no-deblock] [-o bench/results/smooth_grid.json]

Makes smooth test images (linear and radial colour gradients with mild Gaussian noise, sigma 2 grey levels; 384 x
256), codes them at each quality, and compares the mean absolute pixel jump between neighbouring columns/rows
that straddle a 16-px block boundary with the mean jump between neighbours inside blocks. 1.0 = no grid;
issue 19 asks for at most 1.2 at q 0, 50 and 100. Also prints bpp and PSNR. Decoded as the files ask (the ramp and
deblocking filters); ``--no-deblock``: the synthesis' own pixels, what training changes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BLOCK = 16


def smooth_images(h: int = 256, w: int = 384, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot(yy - h * 0.4, xx - w * 0.6) / np.hypot(h, w)
    bases = [
        np.stack([60 + 120 * xx / w, 80 + 100 * yy / h, 200 - 90 * xx / w], -1),  # linear, all channels
        np.stack([200 - 150 * r, 120 + 60 * r, 90 + 140 * r], -1),  # radial "sky"
        np.stack([30 + 190 * (xx + yy) / (w + h)] * 3, -1),  # grey diagonal ramp
    ]
    return [np.clip(b + rng.normal(0, 2, b.shape), 0, 255).round().astype(np.uint8) for b in bases]


def grid_ratio(img: np.ndarray) -> float:
    """Mean |jump| across 16-px block boundaries / mean |jump| inside blocks (columns and rows together)."""
    a = img.astype(np.float64)
    dx = np.abs(np.diff(a, axis=1)).mean(axis=(0, 2))  # jump between column j and j+1
    dy = np.abs(np.diff(a, axis=0)).mean(axis=(1, 2))
    across_x = (np.arange(dx.size) % BLOCK) == BLOCK - 1
    across_y = (np.arange(dy.size) % BLOCK) == BLOCK - 1
    across = np.concatenate([dx[across_x], dy[across_y]]).mean()
    inside = np.concatenate([dx[~across_x], dy[~across_y]]).mean()
    return float(across / inside)


def main():
    import neuralcodec

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--qualities", default="0,50,100")
    ap.add_argument("--no-deblock", dest="deblock", action="store_false", help="decode without the filters")
    ap.add_argument("-o", "--output", type=Path, default=HERE / "results" / "smooth_grid.json")
    args = ap.parse_args()
    rows = []
    images = smooth_images()
    for q in map(float, args.qualities.split(",")):
        ratios, bpps, psnrs = [], [], []
        for img in images:
            data = neuralcodec.compress(img, q, weights=args.weights)
            out = np.asarray(neuralcodec.decompress(data, weights=args.weights, deblock=args.deblock))
            ratios.append(grid_ratio(out))
            bpps.append(8 * len(data) / (img.shape[0] * img.shape[1]))
            mse = np.mean((out.astype(np.float64) - img) ** 2)
            psnrs.append(10 * np.log10(255**2 / mse))
        rows.append({"quality": q, "grid_ratio": [round(r, 3) for r in ratios], "max_grid_ratio": round(max(ratios), 3),
                     "bpp": round(float(np.mean(bpps)), 4), "psnr": round(float(np.mean(psnrs)), 2)})
        print(f"q {q:5.1f}: grid ratio {', '.join(f'{r:.3f}' for r in ratios)}  bpp {rows[-1]['bpp']}  "
              f"PSNR {rows[-1]['psnr']} dB", flush=True)
    originals = [round(grid_ratio(i), 3) for i in images]
    print(f"originals: {originals}")
    args.output.write_text(json.dumps({"weights": args.weights or "flagship", "originals": originals, "rows": rows},
                                      indent=1) + "\n")


if __name__ == "__main__":
    main()
