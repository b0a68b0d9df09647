"""The shipped 8-bit prior's time on Kodak, its first layer in float64 against digit planes on the integer product.

    python bench/experiments/prior_speed.py [--images 24] [--quality 50] [--repeat 5]

The prior (the hyper-synthesis every encode and decode runs, codec/coding/integer8.py) on each Kodak image's z at
one quality, on ONNX Runtime's MatMulInteger as `compress` runs it. Its first layer reads the fixed point (up to 2^23),
too wide for 8-bit products: numpy's float64 product (``digits = False``) or four 7-bit digit planes on the integer
product (``digits = True``, the default since 2026-12-07). Both must give the same integers (checked on every
image); the script alternates them image by image and reports each one's median over the images of its per-image
median of ``--repeat`` runs, and their ratio. Run it with the machine quiet (or state what else ran).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
from pathlib import Path

import numpy as np
from PIL import Image

from neuralcodec.api import load_codec
from neuralcodec.coding.integer8 import ort_matmul
from neuralcodec.rate import rate_of_quality

KODAK = Path(__file__).resolve().parents[3] / "shared" / "data" / "kodak"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--quality", type=float, default=50.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--weights", default="flagship")
    a = ap.parse_args()
    codec = load_codec(a.weights, backend="onnx")
    if not hasattr(codec.stages[-1].prior, "digits"):
        raise SystemExit(f"{a.weights}: its prior is not the 8-bit one")
    prior = codec.stages[-1].prior.with_matmul(ort_matmul(1))  # one thread (the codec's uses the usable cores)
    rate = rate_of_quality(a.quality)
    times = {False: [], True: []}
    for path in sorted(KODAK.glob("*.png"))[:a.images]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        t = codec.t(rate)
        z = codec.transforms.upper_levels(codec.transforms.analysis(rgb, t), t)[0]
        fixed = codec.stages[0].quantize(z, None, rate, context=True).fixed
        out, per = {}, {False: [], True: []}
        for _ in range(a.repeat):
            for digits in (False, True):
                prior.digits = digits
                t0 = time.perf_counter()
                out[digits] = prior(fixed)
                per[digits].append(time.perf_counter() - t0)
        if not np.array_equal(out[False], out[True]):
            raise SystemExit(f"{path.name}: the two first layers disagree")
        for d in per:
            times[d].append(statistics.median(per[d]))
    old, new = (statistics.median(times[d]) * 1000 for d in (False, True))
    ratios = [o / n for o, n in zip(times[False], times[True])]
    print(f"{len(times[True])} Kodak images, q {a.quality:g}, one thread: the prior {old:.1f} ms (first layer in "
          f"float64) -> {new:.1f} ms (digit planes); median ratio {statistics.median(ratios):.2f}x; same integers")


if __name__ == "__main__":
    main()
