"""Where a training gain goes missing: real files against the model's own rate estimate, and training images.

    python bench/experiments/train_gap.py [--weights flagship runs/v2e-ema.safetensors] [--images 6] [--train 12]

For each weights file (torch backend, no deblocking):
Every image is cut to at most 768 x 512 (its top-left corner; a portrait Kodak image to 512 x 512).
- on the first --images Kodak images at q 0 and q 60, the bits of real files against the model's own estimate
  (its forward pass in eval mode: hard-rounded y and z under the float priors; the files' headers count too, ~2-3 %
  of a q 0 file): a ratio that grows means the coder (integer priors, quantized scale tables) loses what training
  gained;
- on --train images of the training corpus (every 113th), real files at q 0/30/60/90:
  if new weights win on these but not on Kodak, they fit the corpus' images rather than photos in general.
Session 18 (bench/README.md, the trend paragraph of "RD per training step") measured a decay arm this way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import neuralcodec
from neuralcodec.api import load_codec
from neuralcodec.models import build
from neuralcodec.rate import rate_of_quality
from neuralcodec.zoo import weights_io

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def rgb(path: Path) -> np.ndarray:
    a = np.asarray(Image.open(path).convert("RGB"))
    return np.ascontiguousarray(a[:512, :768])


def coded(a: np.ndarray, q: float, weights: str) -> tuple[float, float]:
    """bpp and PSNR of a real file."""
    data = neuralcodec.compress(a, q, weights=weights, backend="torch")
    out = np.asarray(neuralcodec.decompress(data, weights=weights, backend="torch", deblock=False), np.float64)
    return 8 * len(data) / (a.shape[0] * a.shape[1]), 10 * np.log10(255**2 / np.mean((out - a) ** 2))


def estimate_ratio(weights: str, images: list[np.ndarray], q: float) -> tuple[float, float]:
    """(real bpp, real bits / the model's estimated bits) over ``images`` at quality ``q``."""
    codec = load_codec(weights, "cpu")
    model = build(codec.spec.arch, **codec.weights.config)
    model.load_state_dict(weights_io.load_state_dict(weights), strict=False)
    model.eval()
    t = torch.tensor([codec.t(rate_of_quality(q))])
    est = real = px = 0
    with torch.no_grad():
        for a in images:
            out = model(torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255, t)
            est += sum(float(-torch.log2(v).sum()) for v in out["likelihoods"].values())
            real += coded(a, q, weights)[0] * a.shape[0] * a.shape[1]
            px += a.shape[0] * a.shape[1]
    return real / px, real / est


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="+", default=["flagship"])
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--train", type=int, default=12)
    args = ap.parse_args()
    kodak = [rgb(p) for p in sorted((DATA / "kodak").glob("*.png"))[: args.images]]
    corpus = sorted(p for p in (DATA / "train").iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    train = [rgb(p) for p in corpus[::113][: args.train]]
    for w in args.weights:
        for q in (0, 60):
            bpp, ratio = estimate_ratio(w, kodak, q)
            print(f"{w}: Kodak q {q}: real {bpp:.4f} bpp, real / estimated bits {ratio:.3f}", flush=True)
    for q in (0, 30, 60, 90):
        cells = []
        for w in args.weights:
            r = np.array([coded(a, q, w) for a in train]).mean(0)
            cells.append(f"{w}: {r[0]:.4f} bpp {r[1]:.3f} dB")
        print(f"training images q {q}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
