"""Time of the integer hyper-synthesis (issue 23: a decode's largest numpy cost) on one Kodak image.

    python bench/hs_speed.py [--weights flagship] [--image kodim05] [--repeat 7]

Runs an int16 integer h_s (codec/coding/integer.py; weights whose prior ships as ``int.h_s.*``: the flagship up to
044a01bd, whose encoder no longer ships: pass --weights with its full file from git history) on the real z of a
Kodak image, alternating the
current code with the one before session 17 (2026-12-06): every call converted the int32 weights to float64 and
copied each output phase's flipped taps out of them (a strided, transposing copy), where the weights are now kept
as int16 with each phase's taps laid out once (``IntLayer.kernels``); median of --repeat each; both outputs
must be equal (exact integers). Run it on a quiet machine; writes bench/results/hs_speed.json. (Session 16's
comparison of the im2col layouts is in git history.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from neuralcodec.api import load_codec
from neuralcodec.coding import integer
from neuralcodec.rate import rate_of_quality

HERE = Path(__file__).resolve().parent


def kernels_before(self, kernels=integer.IntLayer.kernels):
    """Before: the weights' float64 copy and every phase's flipped taps, made again on every call."""
    return kernels(dataclasses.replace(self, weight=self.weight.astype(np.float64)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--image", default="kodim05")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("-o", "--output", type=Path, default=HERE / "results" / "hs_speed.json")
    args = ap.parse_args()
    rgb = np.asarray(Image.open(HERE.parent.parent / "shared" / "data" / "kodak" / f"{args.image}.png").convert("RGB"))
    codec = load_codec(args.weights, "cpu")
    rate = rate_of_quality(50)
    z = codec.quantize(codec.transforms.analysis(rgb, codec.t(rate)), rate)[0]  # the decoded z, as a decoder has it
    stage = codec.stages[1]
    if type(stage.prior) is not integer.IntegerStack:
        raise SystemExit(f"{codec.weights.path.name}: its prior is not the int16 stack this compares "
                         "(bench/experiments/int8_stack.py times the 8-bit one)")
    current = integer.IntLayer.kernels
    times = {"current": [], "before": []}
    outs = {}
    for i in range(args.repeat + 1):
        for name, fn in (("current", current), ("before", kernels_before)):
            integer.IntLayer.kernels = fn
            t0 = time.perf_counter()
            outs[name] = stage.prior(z.fixed)
            if i:
                times[name].append(time.perf_counter() - t0)
    integer.IntLayer.kernels = current
    assert np.array_equal(outs["current"], outs["before"])
    med = {k: round(statistics.median(v), 4) for k, v in times.items()}
    print(f"integer h_s on {args.image} (z {z.symbols.shape}): current {med['current']:.3f} s, "
          f"before {med['before']:.3f} s, ratio {med['before'] / med['current']:.2f}x; outputs equal")
    args.output.write_text(json.dumps({"image": args.image, "z_shape": list(z.symbols.shape), "median_s": med,
                                       "speedup": round(med["before"] / med["current"], 3)}, indent=1))


if __name__ == "__main__":
    main()
