"""Does rounding y toward its mean pay? A dead zone in the encoder's quantizer, measured in real files.

    python bench/experiments/deadzone.py [--images 8] [--qualities 0,30,60,100] [--deltas 0,-0.05,0.05]

The encoder codes v = round(y - mu) under a Gaussian centred on mu, so a residual near a rounding boundary costs
nearly the same distortion either way while the value nearer mu costs fewer bits (video coders round with such an
offset: H.264's encoders use 1/6 to 1/3). Here v = sign(r) * floor(|r| + 0.5 - delta), r = y - mu, on y's level only
(z keeps plain rounding); decoding is unchanged (any integer is a valid symbol). For each delta: bpp and PSNR of
real files of the first --images Kodak images at each quality (the default CPU backend), and the BD-rate against
delta = 0. Encoder-only: nothing in the format changes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
KODAK = HERE.parents[2] / "shared" / "data" / "kodak"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--qualities", default="0,30,60,100")
    ap.add_argument("--deltas", default="0,-0.05,0.05")
    args = ap.parse_args()
    from neuralcodec.coding import stages
    from neuralcodec.evaluation.evaluate import _neuralcodec_coder, curve
    from neuralcodec.evaluation.rd import bd_rate

    delta = {"value": 0.0, "inside": False}
    plain = np.round

    def dead_zone_round(band, out=None):
        d = delta["value"] if delta["inside"] else 0.0
        if d == 0.0:
            return plain(band, out=out)
        res = np.sign(band) * np.floor(np.abs(band) + (0.5 - d))
        if out is not None:
            out[...] = res
            return out
        return res

    class Shim:  # stages' numpy, with round swapped for the dead-zone one inside GaussianStage.quantize only
        def __getattr__(self, name):
            return dead_zone_round if name == "round" else getattr(np, name)

    stages.np = Shim()
    quantize = stages.GaussianStage.quantize

    def y_quantize(self, *a, **k):  # the dead zone on y's level only
        delta["inside"] = True
        try:
            return quantize(self, *a, **k)
        finally:
            delta["inside"] = False

    stages.GaussianStage.quantize = y_quantize
    from neuralcodec.api import _codec_for
    from neuralcodec.settings import EncodeSettings

    if type(_codec_for(EncodeSettings()).stages[-1]) is not stages.GaussianStage:  # e.g. a checkerboard level
        raise SystemExit("y's level is not a plain Gaussian one: this patch would not reach its rounding")
    qualities = [float(q) for q in args.qualities.split(",")]
    deltas = [float(d) for d in args.deltas.split(",")]
    images = sorted(KODAK.glob("*.png"))[:args.images]
    curves = {}
    for d in deltas:
        delta["value"] = d
        r = curve(f"delta {d:g}", [(q, _neuralcodec_coder(q, None)) for q in qualities], images,
                  with_msssim=False)["results"]
        bpp, psnr = r["bpp"], r["psnr-rgb"]
        curves[d] = (bpp, psnr)
        bd = "" if d == deltas[0] else (f"  BD-rate vs delta {deltas[0]:g}: "
                                         f"{bd_rate(*curves[deltas[0]], bpp, psnr):+.3f} %")
        print(f"delta {d:g}: " + ", ".join(f"q{q:g} {b:.4f}/{p:.3f}" for q, b, p in zip(qualities, bpp, psnr)) + bd,
              flush=True)


if __name__ == "__main__":
    main()
