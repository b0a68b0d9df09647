"""The 8-bit hyper-synthesis (codec/coding/integer8.py) on the shipped flagship, rounded after training: bits and time.

    python bench/experiments/int8_stack.py --weights W_INT16 [--images 8] [--qualities 0,50,100] [--calibration 8]

W_INT16: weights whose prior ships in int16 (`int.h_s.*`), e.g. 044a01bd's full file from git history
(`git show e1d803b~1:weights/flagship.safetensors > w.safetensors`, and its card as w.json); the shipped
flagship's prior is 8-bit since session 20.

The shipped prior's int16 stack is read back as floats (``float_parameters``) and rounded to the 8-bit layout with
one input step per later layer, fitted on training images (crops of 768 x 512, every quality): the largest
activation / 119, or a percentile of them / 119 (clipping the rare largest values for a finer step). Reported: Kodak's
y bits under each prior's tables and means, as the range coder would spend them (escapes at 32 bits), against the
int16 prior's; and the time of the prior on each Kodak image (whole z, one thread): int16 in float64 numpy, the
8-bit stack (p99.9 steps) in float64 numpy, and on ONNX Runtime's MatMulInteger; medians over the images.
"""

from __future__ import annotations

import argparse
import os
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from neuralcodec.api import load_codec
from neuralcodec.coding.integer import ACT_BITS, IntegerStack, float_parameters
from neuralcodec.coding.integer8 import CODE_MAX, CODE_ZERO, Int8Stack, ort_matmul

from int8_prior import bits, latents  # the same measures as the simulation before it (this directory)

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[2] / "shared" / "data"


def float_stack(stack: IntegerStack, tensors) -> nn.Sequential:
    """The float network the shipped int16 stack stands for."""
    mods = []
    for layer in stack.layers:
        w = layer.weight
        if layer.transposed:
            m = nn.ConvTranspose2d(w.shape[0], w.shape[1], w.shape[2], layer.stride, layer.padding, layer.output_padding)
        else:
            m = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], layer.stride, layer.padding)
        mods.append(m)
        if layer.leaky:
            mods.append(nn.LeakyReLU())
    net = nn.Sequential(*mods).eval()
    params = float_parameters(tensors, "int.h_s")
    net.load_state_dict({k.removeprefix("h_s."): torch.from_numpy(v) for k, v in params.items()})
    return net


def hidden(net, z_fixed):
    """The float net's hidden activations (the inputs of the 8-bit stack's later layers) on ``z_fixed``."""
    with torch.no_grad():
        x = torch.from_numpy((z_fixed / 2**ACT_BITS).astype(np.float32))[None]
        outs = []
        for m in net:
            x = m(x)
            if isinstance(m, nn.LeakyReLU):
                outs.append(x.flatten().numpy())
    return outs


def median_time(fn, *args, repeat=3):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--qualities", default="0,50,100")
    ap.add_argument("--calibration", type=int, default=8, help="training images for the activation steps")
    ap.add_argument("--weights", default=None)
    args = ap.parse_args()
    codec = load_codec(args.weights, backend="onnx")
    stage = codec.stages[-1]
    shipped = stage.prior
    if type(shipped) is not IntegerStack:
        raise SystemExit(f"{codec.weights.path.name}: its prior is not in int16; pass --weights of int16 weights")
    net = float_stack(shipped, codec.weights.tensors)
    qualities = [float(q) for q in args.qualities.split(",")]
    load = lambda p: np.asarray(Image.open(p).convert("RGB"))  # noqa: E731

    acts = [[] for _ in range(len(shipped.layers) - 1)]
    train = sorted(p for p in (DATA / "train").iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    for p in train[::max(1, len(train) // args.calibration)][:args.calibration]:
        rgb = load(p)[:512, :768]
        for q in qualities:
            for i, a in enumerate(hidden(net, latents(codec, rgb, q)[2])):
                acts[i].append(a)
    acts = [np.concatenate(a) for a in acts]
    choices = {"max": 100.0, "p99.99": 99.99, "p99.9": 99.9, "p99.5": 99.5}
    stacks = {}
    for name, pct in choices.items():
        steps = [float(np.percentile(a, pct)) / (CODE_MAX - CODE_ZERO) for a in acts]
        stacks[name] = Int8Stack.quantize(net, steps)
        print(f"{name}: input steps {[round(s, 5) for s in steps]}")

    totals = {q: np.zeros(1 + len(stacks)) for q in qualities}
    times = {"int16 float64": [], "8-bit float64": [], "8-bit MatMulInteger": []}
    matmul = ort_matmul(1)
    for p in sorted((DATA / "kodak").glob("*.png"))[:args.images]:
        rgb = load(p)
        for q in qualities:
            rate, y, zf = latents(codec, rgb, q)
            row = [bits(stage, shipped(zf), y, rate)]
            row += [bits(stage, s(zf), y, rate) for s in stacks.values()]
            totals[q] += row
        best = stacks["p99.9"]
        times["int16 float64"].append(median_time(shipped, zf))
        times["8-bit float64"].append(median_time(best, zf))
        if matmul is not None:
            fast = best.with_matmul(matmul)
            assert np.array_equal(fast(zf), best(zf))
            times["8-bit MatMulInteger"].append(median_time(fast, zf))
    print(f"{'quality':>8} {'y kbit, int16':>14} " + " ".join(f"{n:>9}" for n in stacks))
    for q, row in totals.items():
        print(f"{q:8.0f} {row[0] / 1e3:14.1f} " + " ".join(f"{100 * (b / row[0] - 1):+8.2f}%" for b in row[1:]))
    print("prior time per Kodak image, one thread (median):",
          ", ".join(f"{k} {1e3 * np.median(v):.1f} ms" for k, v in times.items() if v))


if __name__ == "__main__":
    main()
