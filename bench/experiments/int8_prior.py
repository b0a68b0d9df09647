"""Would an 8-bit integer hyper-synthesis cost bits? A post-training simulation (issue 23, the directory target).

    python bench/experiments/int8_prior.py [--images 8] [--qualities 0,50,100] [--calibration 4]

The flagship's integer hyper-synthesis (codec/coding/integer.py) multiplies 16-bit weights by 24-bit activations,
exactly, in float64: 5.8 GMAC per Kodak image at ~35 GMAC/s a core. 8-bit weights times 8-bit activations summed
in int32 are exact in any order too, and ONNX Runtime's MatMulInteger runs them far faster on this CPU (the
script times one (1536 x 4320) @ (4320 x 640) product both ways). Whether the prior keeps its precision in 8 bits
is what the rest measures, without training: the shipped prior's weights rounded to 8 bits per output channel,
and every hidden activation (and z, its input) rounded to 8 bits with one step per layer (a power of two, or
the largest value over a few training images / 127: a requantization by an integer ratio); the output (scales and means) stays in int32 (no rounding).
Reported: Kodak's y bits under each prior's tables and means, as the range coder would spend them (escapes
at 32 bits), against the shipped prior's, per quality. A trained 8-bit prior (quantization-aware) would do better
than this post-training rounding; a format version would have to define its arithmetic. Caveat for such a
format: u8 x s8 products are exact here (AVX-512 VNNI / AMX), but CPUs without VNNI (AVX2 only) multiply them with
vpmaddubsw, whose int16 pair sums saturate at 255 x 127 x 2; ONNX Runtime's own docs advise 7-bit activations
(reduce_range) there, so an exact format would keep activations to 7 bits or use u8 x u8.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread, as the int8 product
    os.environ[_v] = "1"
from pathlib import Path

import numpy as np
from PIL import Image

from neuralcodec.api import load_codec
from neuralcodec.coding.integer import ACT_BITS, IntegerStack
from neuralcodec.rate import gain_fixed, rate_of_quality

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[2] / "shared" / "data"


def eight_bit_weights(layer):
    """``layer`` with weights rounded to |w| <= 127 per output channel (shift and bias lowered to match)."""
    w = layer.weight.astype(np.int64)
    axis = (0, 2, 3) if layer.transposed else (1, 2, 3)
    peak = np.abs(w).max(axis=axis)
    drop = np.maximum(0, np.ceil(np.log2(np.maximum(peak, 1) / 127.0))).astype(np.int64)
    drop = np.minimum(drop, layer.shift.astype(np.int64))
    shape = (1, -1, 1, 1) if layer.transposed else (-1, 1, 1, 1)
    d = drop.reshape(shape)
    w8 = np.clip(np.floor((w + (1 << d) // 2) / (1 << d)), -127, 127).astype(np.int16)
    bias = np.floor((layer.bias + (1 << drop) // 2) / (1 << drop)).astype(np.int64)
    return dataclasses.replace(layer, weight=w8, bias=bias, shift=(layer.shift - drop).astype(np.int32))


def run(layers, z_fixed, steps=None):
    """The stack layer by layer on the whole z; with ``steps`` (log2 per layer input), each input rounded to 8 bits
    at that step. Returns the output and each layer input's largest magnitude."""
    a, peaks = z_fixed, []
    for i, layer in enumerate(layers):
        peaks.append(int(np.abs(a).max()))
        if steps is not None:  # a step per layer: a power of two, or any (a requantization by an integer ratio)
            k = float(steps[i])
            a = np.round(np.clip(np.floor(a / k + 0.5), -127, 127) * k).astype(np.int64)
        a = IntegerStack([layer])(a)
    return a, peaks


def bits(stage, out, y, rate):
    """Bits of y coded under the tables and means of the prior output ``out`` (escapes at 32 bits)."""
    idx, mu = stage.table_parameters(out, gain_fixed(stage.rate_gain, rate, stage.t_min))
    sym = np.round(y - mu).astype(np.int64) - stage.tables.offsets[idx]
    n = stage.tables.lengths[idx]
    inside = (sym >= 0) & (sym < n)
    counts = stage.tables.counts.astype(np.float64)
    total = counts.sum(1) + 1
    p = counts[idx, np.where(inside, sym, 0)] / total[idx]
    return float(np.where(inside, -np.log2(p), 32.0 - np.log2(1 / total[idx])).sum())


def latents(codec, rgb, quality):
    rate = rate_of_quality(quality)
    t = codec.t(rate)
    y = codec.transforms.analysis(rgb, t)
    z = codec.transforms.upper_levels(y, t)[0]
    zd = codec.stages[0].quantize(z, None, rate, value=False, context=True)
    return rate, y, zd.fixed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--qualities", default="0,50,100")
    ap.add_argument("--calibration", type=int, default=4, help="training images for the activation steps")
    args = ap.parse_args()
    codec = load_codec(backend="onnx")
    stage = codec.stages[-1]
    shipped = stage.prior.layers
    w8 = [eight_bit_weights(layer) for layer in shipped]
    qualities = [float(q) for q in args.qualities.split(",")]
    load = lambda p: np.asarray(Image.open(p).convert("RGB"))  # noqa: E731

    peaks = np.zeros(len(shipped), np.int64)  # calibration: each layer input's largest value, any quality
    train = sorted(p for p in (DATA / "train").iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    for p in train[::max(1, len(train) // args.calibration)][:args.calibration]:
        rgb = load(p)[:512, :768]
        for q in qualities:
            _, _, zf = latents(codec, rgb, q)
            peaks = np.maximum(peaks, run(w8, zf)[1])
    pow2 = [2.0 ** max(0, int(np.ceil(np.log2(max(1, pk) / 127.0)))) for pk in peaks]
    fitted = [max(1, round(pk / 127.0)) for pk in peaks]
    print(f"8-bit input steps per layer (activations at 2^{ACT_BITS}): powers of two {pow2}, fitted",
          fitted)

    totals = {q: np.zeros(4) for q in qualities}
    for p in sorted((DATA / "kodak").glob("*.png"))[:args.images]:
        rgb = load(p)
        for q in qualities:
            rate, y, zf = latents(codec, rgb, q)
            ref = run(shipped, zf)[0]
            totals[q] += [bits(stage, ref, y, rate), bits(stage, run(w8, zf)[0], y, rate),
                          bits(stage, run(w8, zf, pow2)[0], y, rate), bits(stage, run(w8, zf, fitted)[0], y, rate)]
    print(f"{'quality':>8} {'y kbit, shipped':>16} {'8-bit weights':>14} {'+ 8-bit act., 2^k steps':>24} "
          f"{'+ 8-bit act., fitted':>21}")
    for q, (ref, a, b, c) in totals.items():
        print(f"{q:8.0f} {ref / 1e3:16.1f} {100 * (a / ref - 1):+13.2f}% {100 * (b / ref - 1):+23.2f}% "
              f"{100 * (c / ref - 1):+20.2f}%")

    rng = np.random.default_rng(0)  # one h_s-sized product: the float64 path against int8 with int32 sums
    a8, b8 = rng.integers(-127, 128, (1536, 4320)), rng.integers(-127, 128, (4320, 640))
    af, bf = a8.astype(np.float64), b8.astype(np.float64)
    t0 = time.perf_counter()
    for _ in range(3):
        af @ bf
    f64 = (time.perf_counter() - t0) / 3
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        # signed activations ride as uint8 with a zero point of 128: u8 x s8 is the CPU's fast int8 product (s8 x
        # s8 measured 2x slower than float64 here); the zero point is subtracted exactly, in int32
        g = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B", "za"], ["Y"])], "q",
                              [helper.make_tensor_value_info("A", TensorProto.UINT8, [None, 4320])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [None, 640])],
                              initializer=[numpy_helper.from_array(b8.astype(np.int8), "B"),
                                           numpy_helper.from_array(np.array(128, np.uint8), "za")])
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        s = ort.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString(),
                                 so, providers=["CPUExecutionProvider"])
        feed = {"A": (a8 + 128).astype(np.uint8)}
        exact = np.array_equal(s.run(None, feed)[0], (af @ bf).astype(np.int64))
        t0 = time.perf_counter()
        for _ in range(10):
            s.run(None, feed)
        i8 = (time.perf_counter() - t0) / 10
        print(f"(1536 x 4320) @ (4320 x 640): float64 numpy {f64 * 1e3:.1f} ms, u8 x s8 ONNX Runtime MatMulInteger "
              f"{i8 * 1e3:.1f} ms (one thread), {f64 / i8:.1f}x; exact: {exact}")
    except ImportError:
        print(f"float64 numpy {f64 * 1e3:.1f} ms; onnx/onnxruntime missing for the int8 product")


if __name__ == "__main__":
    main()
