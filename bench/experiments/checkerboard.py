"""How much can a checkerboard context save on top of the trained flagship? (issue 3, model `modhpc`)

1. The ceiling for a context on the frozen flagship: on each image and rate, the non-anchors' bits (the
   flagship's own Gaussian likelihoods, float, hard rounding) when their means are shifted by a * (mean of the
   4 neighbouring anchors' residuals) and their scales by 1 + b * (neighbours' |residual| - its mean), with a
   and b chosen per image from a grid (an optimistic, per-image fit).
2. With ``--weights W`` (modhpc weights): the real files' anchor and non-anchor stream bytes (equal counts of
   symbols), i.e. what the trained context saves.

    python bench/experiments/checkerboard.py --images kodim01,kodim05,kodim21 [--weights runs/modhpc.safetensors]
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parents[1]  # bench/
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"


def ceiling(model, img: np.ndarray, t: float) -> dict:
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
    tt = torch.tensor([t])
    with torch.no_grad():
        y = model.analysis(x, tt)
        z_hat, _ = model.entropy_bottleneck(model.hyper_analysis(y, tt), training=False)
        s, mu = model.hyper_synthesis(z_hat, tt)
        v = torch.round(y - mu)
        h, w = y.shape[2:]
        mask = (torch.arange(h)[:, None] + torch.arange(w)[None]) % 2 == 0
        va = v * mask

        def around(a):
            return (torch.roll(a, 1, 2) + torch.roll(a, -1, 2) + torch.roll(a, 1, 3) + torch.roll(a, -1, 3)) / 4

        nb, nba = around(va), around(va.abs())

        def nbytes(mu2, s2):
            _, lik = model.gaussian_conditional(y, s2, means=mu2, training=False)
            return -torch.log2(lik)[0][:, ~mask].sum().item() / 8

        base = nbytes(mu, s)
        best = min((nbytes(mu + a * nb, s * (1 + b * (nba - nba.mean()))), a, b)
                   for a in (0, 0.1, 0.2, 0.3, 0.4) for b in (0, 0.1, 0.2))
    return {"non_anchor_bytes": round(base), "best_bytes": round(best[0]), "a": best[1], "b": best[2],
            "saving_pct": round(100 * (1 - best[0] / base), 2)}


def streams(weights: str, img: np.ndarray, quality: float) -> dict:
    import neuralcodec
    from neuralcodec.api import read_container

    c = read_container(neuralcodec.compress(img, quality, weights=weights))
    y = c.chunks[b"YLAT"]
    n = struct.unpack_from("<I", y)[0]
    return {"anchor_bytes": n, "non_anchor_bytes": len(y) - 4 - n, "saving_pct": round(100 * (1 - (len(y) - 4 - n) / n), 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default="kodim01,kodim05,kodim21")
    ap.add_argument("--weights", default=None, help="modhpc weights: measure their real streams too")
    ap.add_argument("-o", "--output", type=Path, default=HERE / "results" / "checkerboard.json")
    a = ap.parse_args()
    from neuralcodec.zoo import weights_io
    from neuralcodec.models import build

    flagship = build("modhp", **weights_io.load("flagship").config)
    flagship.load_state_dict(weights_io.load_state_dict("flagship"), strict=False)
    flagship.eval()
    t_min = float(weights_io.load(a.weights).config.get("t_min", 0.0)) if a.weights else 0.0
    rows = []
    for name in a.images.split(","):
        img = np.asarray(Image.open(KODAK / f"{name}.png").convert("RGB"))
        for t in (0.2, 0.9):
            row = {"image": name, "t": t, "ceiling": ceiling(flagship, img, t)}
            if a.weights:
                row["trained"] = streams(a.weights, img, 100 * (t - t_min) / (1 - t_min))
            rows.append(row)
            print(json.dumps(row), flush=True)
    a.output.write_text(json.dumps({"weights": a.weights, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
