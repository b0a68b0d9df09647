"""Decoder-side reconstruction offsets: would decoding y as mu + v + delta(table index, |v|), with delta the mean
quantization error measured on training images (the bin centroids), beat the plain mu + v?

Fits delta on crops of the training corpus at each quality, then decodes the first Kodak images with and without
it (same symbols, so the same rate) and reports the PSNR change. bench/results/recon_offset.json.

    python bench/experiments/recon_offset.py [--images 4] [--weights flagship]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from neuralcodec.api import load_codec
from neuralcodec.rate import rate_of_quality

HERE = Path(__file__).resolve().parents[1]  # bench/
SHARED = HERE.parent.parent / "shared" / "data"
V_MAX = 4  # |v| of 4 and more share one offset


def latents(codec, rgb: np.ndarray, rate: int):
    """y, its symbols v = round(y - mu), table indexes and means, as the decoder will know them."""
    y, _, idx, mu = codec.analysis_with_prior(rgb, rate)
    y = y[0].numpy()
    return y, np.round(y - mu), idx.astype(np.int64), mu


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=4, help="first N Kodak images")
    ap.add_argument("--train-images", type=int, default=8, help="training images (512 px crops) to fit on")
    ap.add_argument("--qualities", default="0,30,60,100")
    ap.add_argument("--weights", default="flagship")
    a = ap.parse_args()
    torch.set_num_threads(1)
    codec = load_codec(a.weights, "cpu")
    n_idx = len(codec.stages[-1].scale_table)
    train = sorted((SHARED / "train").glob("*.jpg"))
    train = train[:: max(1, len(train) // a.train_images)][: a.train_images]
    kodak = sorted((SHARED / "kodak").glob("*.png"))[: a.images]
    rows = []
    for q in [float(x) for x in a.qualities.split(",")]:
        rate = rate_of_quality(q)
        count, total = np.zeros(n_idx * (V_MAX + 1)), np.zeros(n_idx * (V_MAX + 1))
        for f in train:
            y, v, idx, mu = latents(codec, np.asarray(Image.open(f).convert("RGB"))[:512, :512], rate)
            key = (idx * (V_MAX + 1) + np.minimum(np.abs(v), V_MAX).astype(np.int64)).ravel()
            count += np.bincount(key, minlength=count.size)
            total += np.bincount(key, weights=((y - mu - v) * np.sign(v)).ravel(), minlength=count.size)
        delta = np.where(count > 50, total / np.maximum(count, 1), 0.0).reshape(n_idx, V_MAX + 1)
        delta[:, 0] = 0.0  # v = 0: symmetric, no shift
        n = count.reshape(n_idx, V_MAX + 1)
        mean_delta = [float((delta[:, k] * n[:, k]).sum() / max(n[:, k].sum(), 1)) for k in range(1, V_MAX + 1)]
        gains = {"fitted": [], "half": []}
        for f in kodak:
            rgb = np.asarray(Image.open(f).convert("RGB"))
            y, v, idx, mu = latents(codec, rgb, rate)
            shift = np.sign(v) * delta[idx, np.minimum(np.abs(v), V_MAX).astype(np.int64)]

            def decoded(values):
                return codec.transforms.synthesis([values.astype(np.float32)], codec.t(rate), *rgb.shape[:2])

            base = psnr(rgb, decoded(mu + v))
            gains["fitted"].append(psnr(rgb, decoded(mu + v + shift)) - base)
            gains["half"].append(psnr(rgb, decoded(mu + v + shift / 2)) - base)
        row = {"quality": q, "mean_offset_by_abs_v": [round(x, 3) for x in mean_delta],
               "nonzero_share": round(float(n[:, 1:].sum() / n.sum()), 3),
               **{f"psnr_change_{k}": round(float(np.mean(g)), 3) for k, g in gains.items()}}
        rows.append(row)
        print(row, flush=True)
    out = HERE / "results" / "recon_offset.json"
    out.write_text(json.dumps({"weights": a.weights, "kodak_images": a.images, "train_images": a.train_images,
                               "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
