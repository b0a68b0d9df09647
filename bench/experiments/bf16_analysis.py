"""Does a bfloat16 analysis cost bits? The encoder's analysis on OpenVINO in bfloat16 against ONNX Runtime in float32.

    python bench/experiments/bf16_analysis.py [--images 24] [--qualities 0,30,60,100] [--threads 1]

CPUs with AMX or AVX512-BF16 multiply bfloat16 several times faster than float32; OpenVINO runs an ONNX graph in
bfloat16 there by default. The analysis only makes the encoder's y (decoding reads integers from the file), so
its precision moves a few rounded values of y, not the format. For each Kodak image and quality: the file
written with `compress --precision fp32` (the analysis on ONNX Runtime) and `--precision bf16` (on OpenVINO,
codec/pipeline/onnx_backend.py), each decoded the same way; bpp and PSNR of both, the BD-rate of bfloat16
against float32, the share of y's rounded values that differ (t = 0.5), and the median analysis time of each.
Needs `pip install openvino` and a CPU with bfloat16 arithmetic.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
KODAK = HERE.parents[2] / "shared" / "data" / "kodak"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--qualities", default="0,30,60,100")
    ap.add_argument("--threads", type=int, default=1, help="threads of each runtime")
    ap.add_argument("--weights", default=None)
    args = ap.parse_args()
    os.environ["NEURALCODEC_THREADS"] = str(args.threads)
    import neuralcodec
    from neuralcodec.api import load_codec
    from neuralcodec.evaluation.rd import bd_rate

    analysis = {p: load_codec(args.weights, "cpu", p, "onnx").transforms.analysis for p in ("fp32", "bf16")}
    qualities = [float(q) for q in args.qualities.split(",")]
    rows = {name: {q: [] for q in qualities} for name in ("fp32", "bf16")}
    changed, times = [], {"fp32": [], "bf16": []}
    for path in sorted(KODAK.glob("*.png"))[:args.images]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        ys = {}
        for name, fn in analysis.items():
            fn(rgb, 0.5)
            t0 = time.perf_counter()
            ys[name] = fn(rgb, 0.5)
            times[name].append(time.perf_counter() - t0)
        changed.append(float(np.mean(np.round(ys["bf16"]) != np.round(ys["fp32"]))))
        for q in qualities:
            for name in ("fp32", "bf16"):
                data = neuralcodec.compress(rgb, q, backend="onnx", weights=args.weights, precision=name)
                out = np.asarray(neuralcodec.decompress(data, backend="onnx")).astype(np.float64)
                mse = np.mean((out - rgb) ** 2)
                rows[name][q].append((8 * len(data) / (rgb.shape[0] * rgb.shape[1]), mse))
    curves = {}
    for name, per_q in rows.items():
        bpp = [float(np.mean([b for b, _ in per_q[q]])) for q in qualities]
        psnr = [float(np.mean([10 * np.log10(255**2 / m) for _, m in per_q[q]])) for q in qualities]
        curves[name] = (bpp, psnr)
        print(f"{name}: " + ", ".join(f"q{q:g} {b:.4f} bpp {p:.3f} dB" for q, b, p in zip(qualities, bpp, psnr)))
    print(f"BD-rate bf16 vs fp32 (PSNR): {bd_rate(*curves['fp32'], *curves['bf16']):+.3f} %")
    print(f"y's rounded values changed at t = 0.5: {100 * statistics.mean(changed):.3f} % (mean over images)")
    print("analysis of one image, median: " + ", ".join(
        f"{k} {1e3 * statistics.median(v):.1f} ms" for k, v in times.items()) + f" ({args.threads} thread(s))")


if __name__ == "__main__":
    main()
