"""The integer hyper-synthesis' band size on a wide image, against a Kodak image's one band (issue 23, big images).

    python bench/experiments/prior_bands.py [--width 8192] [--rows 2048] [--bands 8192,16384,32768] [--repeat 3]

``IntegerStack.bands`` evaluates the prior in bands of about BAND_POSITIONS output positions (memory bounded, the
result exact whatever the band). A Kodak image's z fits one band; a wide image's is cut into bands of a few z rows.
Times the flagship's prior, per megapixel of the image it serves, on z of a Kodak image and of a ROWS x WIDTH strip
(the band geometry of a WIDTH-wide image), for each band size (alternating; best of REPEAT), and the strip's peak
band buffer. z is random in the range a coded z takes; the time does not depend on the values.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from neuralcodec.api import load_codec
from neuralcodec.coding.integer import ACT_BITS


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=8192)
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--bands", default="8192,16384,32768", help="output positions per band")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    stage = load_codec(backend="onnx").stages[-1]
    prior, up = stage.prior, stage.prior.upsampling()
    first = prior.layers[0]
    zc = first.weight.shape[0] if first.transposed else first.weight.shape[1]  # input channels (torch layouts)
    rng = np.random.default_rng(0)
    zs = {"kodak 768x512": rng.integers(-3, 4, (zc, 512 // 64, 768 // 64)),
          f"{args.rows}x{args.width}": rng.integers(-3, 4, (zc, args.rows // 64, args.width // 64))}
    zs = {k: v.astype(np.int64) << ACT_BITS for k, v in zs.items()}
    print(f"{'positions/band':>14} " + " ".join(f"{k + ' s/Mpx':>20}" for k in zs) + "  ratio  band MB")
    for positions in (int(b) for b in args.bands.split(",")):
        best = {}
        for _ in range(args.repeat):
            for k, z in zs.items():
                rows = max(1, positions // (z.shape[2] * up * up))
                t0 = time.perf_counter()
                for _b in prior.bands(z, rows):
                    pass
                s = (time.perf_counter() - t0) / (z.shape[1] * z.shape[2] * 4096 / 1e6)
                best[k] = min(best.get(k, np.inf), s)
        small, big = best.values()
        mb = prior.layers[-1].out_channels() * positions * 8 / 1e6
        print(f"{positions:14d} " + " ".join(f"{v:20.4f}" for v in best.values()) + f"  {big / small:5.2f}  {mb:7.0f}")


if __name__ == "__main__":
    main()
