"""What one encoded image costs a core, against what the arithmetic allows (issue 23's directory target).

    python bench/experiments/encode_floor.py [--images 8] [--quality 50] [--int8]

A directory run with ``-j 2`` on two cores gives each worker one core, so its throughput is the core-seconds
one image costs. This encodes Kodak images in process on one thread (``NEURALCODEC_THREADS=1``, BLAS on one
thread), splits each encode into the analysis (ONNX Runtime, float32), the integer hyper-synthesis (float64
products of exact integers in numpy; once per encode: its bands give quantization and coding their
parameters), the levels above y, and the rest (PNG reading, quantization, range coding), and counts each network's multiply-adds (torch hooks on the
flagship for the analysis; the integer layers' shapes for the hyper-synthesis). One core's peak is measured
with numpy's float32 and float64 matrix products (2048^3). The *floor* is those multiply-adds at that peak:
what an encode would cost if every product ran as fast as the core can multiply. avifenc -s 6's time per
image comes from ``bench/results/speed.json`` (one process per image, one thread).

``--int8`` also quantizes the analysis graph to int8 (ONNX Runtime's static QDQ quantization, per-channel
weights, calibrated on 16 training crops) and reports its time and how many of y's rounded values change.
It needs the onnx package and an ml_dtypes that runs on numpy 1.x (``pip install onnx==1.17.0 'ml_dtypes<0.5'``).

Run it on a quiet machine; writes bench/results/encode_floor.json.
"""

from __future__ import annotations

import os

for _v in ("NEURALCODEC_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # one core, whatever the caller's environment says

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
KODAK = BENCH.parent.parent / "shared" / "data" / "kodak"
TRAIN = BENCH.parent.parent / "shared" / "data" / "train"


def gemm_peak(dtype, n: int = 2048, repeat: int = 5) -> float:
    """Multiply-adds per second of one core's best n x n x n matrix product."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n)).astype(dtype), rng.random((n, n)).astype(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeat))
    return n**3 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def hs_macs(stack, z_rows: int, z_cols: int) -> int:
    """Multiply-adds of the integer hyper-synthesis on a z of this size (a transposed convolution in polyphase
    form costs in_positions x C_in x C_out x k^2, a convolution out_positions x C_out x C_in x k^2)."""
    rows, cols, total = z_rows, z_cols, 0
    for layer in stack.layers:
        w = layer.weight
        if layer.transposed:
            total += rows * cols * w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3]
            rows, cols = rows * layer.stride, cols * layer.stride
        else:
            rows, cols = rows // layer.stride, cols // layer.stride
            total += rows * cols * w.size
    return total


def analysis_macs_per_px() -> float:
    """The flagship analysis' multiply-adds per pixel (convolutions and GDNs, bench/macs.py's hooks)."""
    import torch

    sys.path.insert(0, str(BENCH))
    from macs import count

    from neuralcodec.api import load_codec

    model = load_codec(backend="torch").transforms.model
    x, t = torch.rand(1, 3, 256, 256), torch.tensor([0.5])
    return count(model, lambda: model.analysis(x, t)) / (256 * 256)


def encode_phases(images: list[Path], quality: float) -> dict:
    """Median seconds per encode of each phase, in process, one thread, after two warm-up encodes."""
    import neuralcodec
    from neuralcodec.api import load_codec
    from neuralcodec.coding import integer
    from neuralcodec.pipeline import onnx_backend

    spent = defaultdict(float)

    def timing(cls, name, key):
        original = getattr(cls, name)

        def wrapped(self, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                spent[key(args)] += time.perf_counter() - t0
        setattr(cls, name, wrapped)

    timing(onnx_backend.OrtTransforms, "_run", lambda args: args[0])  # by graph: analysis, upper
    timing(integer.IntegerStack, "_run", lambda args: "hyper-synthesis")
    codec = load_codec(backend="onnx")
    for p in images[:2]:
        neuralcodec.compress(p, quality)
    rows = []
    for p in images:
        spent.clear()
        t0 = time.perf_counter()
        neuralcodec.compress(p, quality)
        total = time.perf_counter() - t0
        rows.append({"total": total, **spent, "rest": total - sum(spent.values())})
    phases = {k: statistics.median(r.get(k, 0.0) for r in rows) for k in rows[0]}
    stack = next(s.prior for s in codec.stages if getattr(s, "prior", None) is not None)
    return phases, stack


def int8_analysis(bundle: Path, image: Path, repeat: int = 7) -> dict:
    """float32 against int8 (QDQ) analysis on one image, one thread, alternating; y's rounding changes."""
    import tempfile

    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from PIL import Image

    def tensor(path, size=None):
        a = np.asarray(Image.open(path).convert("RGB"))
        a = a[:size, :size] if size else a
        return a.transpose(2, 0, 1)[None].astype(np.float32) / 255

    class Crops(CalibrationDataReader):
        def __init__(self):
            files = sorted(p for p in TRAIN.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:16]
            self.feeds = iter([{"x": tensor(f, 256), "t": np.array([i / 15], np.float32)} for i, f in enumerate(files)])

        def get_next(self):
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as tmp:
        q8 = Path(tmp) / "analysis-int8.onnx"
        quantize_static(str(bundle / "analysis.onnx"), str(q8), Crops(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv"], per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sessions = {name: ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
                    for name, p in (("fp32", bundle / "analysis.onnx"), ("int8", q8))}
        feeds = {"x": tensor(image), "t": np.array([0.5], np.float32)}
        y = {name: s.run(None, feeds)[0] for name, s in sessions.items()}
        times = defaultdict(list)
        for _ in range(repeat):
            for name, s in sessions.items():
                times[name].append(_timed(lambda: s.run(None, feeds)))
    fp32, int8 = (statistics.median(times[n]) for n in ("fp32", "int8"))
    return {"fp32_s": fp32, "int8_s": int8, "speedup": fp32 / int8,
            "y_rounding_changed": float((np.round(y["fp32"]) != np.round(y["int8"])).mean())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--quality", type=float, default=50)
    ap.add_argument("--int8", action="store_true", help="also time an int8 analysis (needs onnx, ml_dtypes<0.5)")
    ap.add_argument("-o", "--out", type=Path, default=BENCH / "results" / "encode_floor.json")
    args = ap.parse_args()
    images = sorted(KODAK.glob("*.png"))[: args.images]

    phases, stack = encode_phases(images, args.quality)
    rows, cols = 512, 768  # every Kodak image has 393,216 pixels (portrait or landscape)
    px = rows * cols
    macs = {"analysis": analysis_macs_per_px() * px,
            "hyper-synthesis": hs_macs(stack, rows // 64, cols // 64)}
    peak = {"float32": gemm_peak(np.float32), "float64": gemm_peak(np.float64)}
    floor = {"analysis": macs["analysis"] / peak["float32"], "hyper-synthesis": macs["hyper-synthesis"] / peak["float64"]}
    speed = json.loads((BENCH / "results" / "speed.json").read_text())
    avifenc = speed["median_s"]["avif_enc"]
    result = {"images": len(images), "quality": args.quality, "phases_s": phases, "macs": macs,
              "core_peak_macs_per_s": peak, "floor_s": floor,
              "achieved_share_of_peak": {k: floor[k] / phases[k] for k in floor if phases.get(k)},
              "avifenc_s": avifenc}
    if args.int8:
        from neuralcodec.api import load_codec

        result["int8_analysis"] = int8_analysis(load_codec(backend="onnx").transforms.directory, images[0])
    args.out.write_text(json.dumps(result, indent=1) + "\n")

    print(f"one thread, {len(images)} Kodak images, q {args.quality:g}, median per encode")
    print(f"{'phase':18} {'s':>7} {'GMAC':>7} {'floor s':>8} {'of peak':>8}")
    for k in ("analysis", "hyper-synthesis", "upper", "rest", "total"):
        if k in phases:
            g = macs.get(k)
            print(f"{k:18} {phases[k]:7.3f} {g / 1e9 if g else float('nan'):7.2f} {floor.get(k, float('nan')):8.3f} "
                  f"{result['achieved_share_of_peak'].get(k, float('nan')):8.0%}")
    print(f"core peak: float32 {peak['float32'] / 1e9:.1f}, float64 {peak['float64'] / 1e9:.1f} GMAC/s; "
          f"floor of analysis + hyper-synthesis {sum(floor.values()):.3f} s against avifenc -s 6 {avifenc} s per image")
    if args.int8:
        r = result["int8_analysis"]
        print(f"int8 analysis: {r['int8_s']:.3f} s against {r['fp32_s']:.3f} s float32 ({r['speedup']:.2f}x); "
              f"{r['y_rounding_changed']:.1%} of y's rounded values change")


if __name__ == "__main__":
    main()
