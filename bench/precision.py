"""What float16 transforms (`--half`) cost in quality: Kodak images coded with fp32 and fp16 g_a/g_s.

For each image and quality: the file and PSNR of the float32 path; the file made with fp16 analysis (its bpp
and its PSNR decoded in fp16) and the fp32 file decoded with fp16 synthesis. The coded latents are exact
either way; only the float transforms change. fp16 runs under torch autocast, on CUDA when present, else on
the CPU (slow there, but the same float16 arithmetic), so the quality cost is measurable without a GPU.

    python bench/precision.py --images 6 --qualities 10,50,90
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--qualities", default="10,50,90")
    ap.add_argument("--device", default="auto")
    ap.add_argument("-o", "--output", default=str(HERE / "results" / "precision.json"))
    a = ap.parse_args()
    import neuralcodec
    from neuralcodec.api import load_codec

    device = str(load_codec(None, a.device).device)
    rows = []
    for path in sorted(KODAK.glob("*.png"))[: a.images]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        px = rgb.shape[0] * rgb.shape[1]
        for q in map(float, a.qualities.split(",")):
            t = {}
            t0 = time.perf_counter()
            full = neuralcodec.compress(rgb, q, device=a.device)
            t["enc32"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            dec32 = np.asarray(neuralcodec.decompress(full, device=a.device))
            t["dec32"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            half = neuralcodec.compress(rgb, q, device=a.device, precision="fp16")
            t["enc16"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            dec16 = np.asarray(neuralcodec.decompress(full, device=a.device, precision="fp16"))
            t["dec16"] = time.perf_counter() - t0
            both16 = np.asarray(neuralcodec.decompress(half, device=a.device, precision="fp16"))
            row = {"image": path.stem, "quality": q, "bpp32": 8 * len(full) / px, "bpp16": 8 * len(half) / px,
                   "psnr32": psnr(dec32, rgb), "psnr_dec16": psnr(dec16, rgb), "psnr_both16": psnr(both16, rgb),
                   "max_pixel_diff_dec16": int(np.abs(dec16.astype(int) - dec32.astype(int)).max()),
                   **{k: round(v, 3) for k, v in t.items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    med = {k: float(np.median([r[k] for r in rows])) for k in ("bpp32", "bpp16", "psnr32", "psnr_dec16", "psnr_both16")}
    summary = {
        "device": device, "images": a.images, "qualities": a.qualities,
        "mean_psnr_loss_decode16_db": float(np.mean([r["psnr32"] - r["psnr_dec16"] for r in rows])),
        "max_psnr_loss_decode16_db": float(np.max([r["psnr32"] - r["psnr_dec16"] for r in rows])),
        "mean_psnr_loss_both16_db": float(np.mean([r["psnr32"] - r["psnr_both16"] for r in rows])),
        "mean_bpp_change_encode16_pct": float(np.mean([100 * (r["bpp16"] / r["bpp32"] - 1) for r in rows])),
        "medians": med,
        "median_s": {k: float(np.median([r[k] for r in rows])) for k in ("enc32", "dec32", "enc16", "dec16")},
        "rows": rows,
    }
    Path(a.output).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
