"""What float16 transforms (`--half`) cost in quality: Kodak images coded with fp32 and fp16 g_a/g_s.

For each image and quality: the file and PSNR of the float32 path; the file made with fp16 analysis (its bpp
and its PSNR decoded in fp16) and the fp32 file decoded with fp16 synthesis. The coded latents are exact
either way; only the float transforms change. On CUDA, fp16 is torch autocast itself. On the CPU, where torch's
float16 convolutions are ~200x slower than float32, fp16 is emulated: every convolution (GDN's included) sees
its input, weights and bias rounded to float16, accumulates in float32 (as GPU tensor cores do) and rounds its
output to float16; an activation beyond float16's range becomes inf, as it would on the GPU.

    python bench/experiments/precision.py --images 6 --qualities 10,50,90
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parents[1]  # bench/
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def emulated_fp16_codec(weights=None):
    """A CPU codec whose transforms store activations in float16: every convolution and GDN of the model
    rounds its input and output to float16 (weights ship as float16 already) and computes in float32, as
    GPU tensor cores accumulate. Counts GDN inputs whose square would overflow float16 (inf on a GPU)."""
    import torch
    from torch import nn

    from neuralcodec.pipeline import codec as pipeline
    from neuralcodec.zoo import weights_io

    codec = pipeline.Codec(weights_io.load(weights), "cpu")
    codec.overflows = 0

    def pre(m, args):
        x = args[0].half()
        if type(m).__name__ == "GDN" and x.float().abs().max().item() > 255.0:
            codec.overflows += 1
        return (x.float(), *args[1:])

    def post(m, args, out):
        return out.half().float()

    for m in codec.model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) or type(m).__name__ == "GDN":
            m.register_forward_pre_hook(pre)
            m.register_forward_hook(post)
    with torch.no_grad():
        for prm in codec.model.parameters():
            prm.copy_(prm.half().float())
    return codec


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
    mode = "fp16 autocast"
    if device == "cpu":  # emulated: the API's fp16 codec is the hooked one
        import neuralcodec.api as api

        codec16, real = emulated_fp16_codec(), api.load_codec
        api.load_codec = lambda w=None, d="auto", precision="fp32": codec16 if precision == "fp16" else real(w, d)
        mode = "emulated fp16 (CPU)"
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
        "device": device, "mode": mode, "images": a.images, "qualities": a.qualities,
        "mean_psnr_loss_decode16_db": float(np.mean([r["psnr32"] - r["psnr_dec16"] for r in rows])),
        "max_psnr_loss_decode16_db": float(np.max([r["psnr32"] - r["psnr_dec16"] for r in rows])),
        "mean_psnr_loss_both16_db": float(np.mean([r["psnr32"] - r["psnr_both16"] for r in rows])),
        "mean_bpp_change_encode16_pct": float(np.mean([100 * (r["bpp16"] / r["bpp32"] - 1) for r in rows])),
        "medians": med,
        "median_s": {k: float(np.median([r[k] for r in rows])) for k in ("enc32", "dec32", "enc16", "dec16")},
        "rows": rows,
    }
    if device == "cpu":
        summary["gdn_inputs_beyond_fp16_square"] = codec16.overflows
    Path(a.output).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
