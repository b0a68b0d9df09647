"""Time of the integer hyper-synthesis (issue 23: a decode's largest numpy cost) on one Kodak image.

    python bench/hs_speed.py [--weights flagship] [--image kodim05] [--repeat 7]

Runs the flagship's integer h_s (codec/coding/integer.py) on the real z of a Kodak image, alternating the
current im2col layout with the one before 2026-12-06 (patches copied position-major, (H'W', C k k), and the
product taken with the transposed matrix), median of --repeat each; both outputs must be equal (exact
integers). Run it on a quiet machine; writes bench/results/hs_speed.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from neuralcodec.api import load_codec
from neuralcodec.coding import integer
from neuralcodec.rate import rate_of_quality

HERE = Path(__file__).resolve().parent


def conv2d_before(a, w, stride, padding):
    """The previous _conv2d: position-major patches."""
    o, c, kh, kw = w.shape
    if padding:
        a = np.pad(a, ((0, 0), (padding, padding), (padding, padding)))
    patches = sliding_window_view(a, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
    hh, ww = patches.shape[1:3]
    cols = patches.transpose(1, 2, 0, 3, 4).reshape(hh * ww, c * kh * kw)
    return (w.reshape(o, -1) @ cols.T).reshape(o, hh, ww)


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
    current = integer._conv2d
    times = {"current": [], "before": []}
    outs = {}
    for i in range(args.repeat + 1):
        for name, fn in (("current", current), ("before", conv2d_before)):
            integer._conv2d = fn
            t0 = time.perf_counter()
            outs[name] = stage.prior(z.fixed)
            if i:
                times[name].append(time.perf_counter() - t0)
    integer._conv2d = current
    assert np.array_equal(outs["current"], outs["before"])
    med = {k: round(statistics.median(v), 4) for k, v in times.items()}
    print(f"integer h_s on {args.image} (z {z.symbols.shape}): current {med['current']:.3f} s, "
          f"before {med['before']:.3f} s, ratio {med['before'] / med['current']:.2f}x; outputs equal")
    args.output.write_text(json.dumps({"image": args.image, "z_shape": list(z.symbols.shape), "median_s": med,
                                       "speedup": round(med["before"] / med["current"], 3)}, indent=1))


if __name__ == "__main__":
    main()
