"""Grow the flagship's y from M=192 to a wider M function-preservingly, and check that nothing changed.

    python bench/experiments/grow.py [--weights flagship] [--M 320] [-o runs/grown-320.safetensors] [--images 4]

Writes the grown weights (a weights file that `neuralcodec train --init-weights` and every coding command take),
then codes the first ``--images`` Kodak images at several qualities with the original and the grown weights and
prints the largest PSNR difference and byte ratio (the grown model must reproduce the original within 0.01 dB
and 0.5 % of the bytes), and the magnitude of the new channels of y (they must all quantize to 0).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import neuralcodec
from neuralcodec.zoo import weights_io
from neuralcodec.models import build

ROOT = Path(__file__).resolve().parents[2]
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="flagship")
    ap.add_argument("--M", type=int, default=320)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shrink", type=float, default=0.03)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--qualities", default="0,50,100")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "runs" / "grown-320.safetensors")
    ap.add_argument("--json", type=Path, default=None, help="write the measurements here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    src = weights_io.load(args.weights)
    torch.manual_seed(args.seed)
    model = build(src.arch, **{**src.config, "M": args.M})
    model.load_state_dict(model.grown_state(weights_io.network_state(src), shrink=args.shrink), strict=False)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    weights_io.export(model.eval(), args.output, {"note": f"{args.weights} grown to M={args.M} (bench/experiments/grow.py, "
                                                          f"seed {args.seed}, shrink {args.shrink}), untrained"})
    grown = weights_io.load(args.output)
    rows, worst_db, worst_bytes = [], 0.0, 0.0
    for path in sorted(KODAK.glob("*.png"))[: args.images]:
        img = np.asarray(Image.open(path).convert("RGB"))
        for q in map(float, args.qualities.split(",")):
            a = neuralcodec.compress(img, quality=q, weights=args.weights)
            b = neuralcodec.compress(img, quality=q, weights=str(args.output))
            pa = psnr(img, np.asarray(neuralcodec.decompress(a, weights=args.weights)))
            pb = psnr(img, np.asarray(neuralcodec.decompress(b, weights=str(args.output))))
            rows.append({"image": path.name, "quality": q, "bytes": [len(a), len(b)], "psnr": [round(pa, 4), round(pb, 4)]})
            worst_db = max(worst_db, abs(pa - pb))
            worst_bytes = max(worst_bytes, abs(len(b) / len(a) - 1))
            print(f"{path.name} q{q:5.1f}: {len(a)} -> {len(b)} B, {pa:.3f} -> {pb:.3f} dB", flush=True)
    result = {"weights": args.weights, "M": args.M, "shrink": args.shrink, "max_abs_dpsnr": round(worst_db, 5),
              "max_byte_change": round(worst_bytes, 5), "rows": rows}
    print(f"largest PSNR change {worst_db:.4f} dB, largest byte change {100 * worst_bytes:.3f} %")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
