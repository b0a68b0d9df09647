"""What a channel-wise context could save on the shipped flagship: a ceiling from its own latents, before building one.

    NEURALCODEC_THREADS=1 python bench/experiments/channel_context.py [--images 24] [--qualities 0,30,60,100] [--slices 5]

A channel-wise autoregressive prior (Minnen & Singh 2020) codes y in slices, each slice's means and scales
predicted from the hyperprior and the slices decoded before it. Here the shipped flagship's y-level is captured
while coding real Kodak files (r = y - mu in the gained units the coder rounds, v = round(r), the table's scale s),
and each channel's mean is corrected by a linear predictor of the decoded residuals v of the channels before it:
r_c ~ sum_j a_cj v_j, fitted (ridge) on kodim01, 03, ... and tested on kodim02, 04, ..., per quality. Bits are
the Gaussian bin probabilities under the table's scale (the best of --ridges on the test half: a mild optimism),
before (v) and after (round(r - prediction)), so the prior's own table quantization cancels. Two orders: every earlier channel, and earlier slices only (--slices equal
slices in channel order, the form a slice-wise model takes). A linear mean shift is a floor of what a trained
context network gets, and the features use the symbols as coded without the correction (a real model decodes
the corrected ones), so read it as the order of magnitude. bench/results/channel_context.json.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
KODAK = HERE.parents[2] / "shared" / "data" / "kodak"


def gaussian_bits(v: np.ndarray, s: np.ndarray) -> float:
    """Bits of symbols v under zero-mean Gaussians of scale s, integrated over each unit bin."""
    from scipy.special import ndtr

    p = ndtr((v + 0.5) / s) - ndtr((v - 0.5) / s)
    return float(-np.log2(np.maximum(p, 1e-12)).sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--qualities", default="0,30,60,100")
    ap.add_argument("--slices", type=int, default=5)
    ap.add_argument("--ridges", default="10,100,1000", help="ridge penalties tried; the best on the test half is kept")
    ap.add_argument("-o", "--out", default=str(HERE.parent / "results" / "channel_context.json"))
    args = ap.parse_args()
    import neuralcodec
    from neuralcodec.coding import stages

    captured = []
    quantize = stages.GaussianStage.quantize

    def capturing_quantize(self, x, above, rate, value=False, context=False):
        x0 = x.copy()
        d = quantize(self, x, above, rate, value, context)
        _, mu = self.parameters(above, rate)
        captured.append((x0 - mu, d.symbols.astype(np.float64), self.scale_table[d.indexes]))
        return d

    stages.GaussianStage.quantize = capturing_quantize
    images = sorted(KODAK.glob("*.png"))[:args.images]
    ridges = [float(x) for x in args.ridges.split(",")]
    report = {"images": len(images), "slices": args.slices, "ridges": ridges, "qualities": {}}
    for q in [float(q) for q in args.qualities.split(",")]:
        per_image, bits_of_file = [], []
        for p in images:
            captured.clear()
            bits_of_file.append(8 * len(neuralcodec.compress(p, q, deblock=False)))
            r, v, s = captured[-1]  # y's level (the last Gaussian one)
            c = r.shape[0]
            per_image.append(tuple(a.reshape(c, -1).T.astype(np.float64) for a in (r, v, s)))
        c = per_image[0][0].shape[1]
        train = [x for i, x in enumerate(per_image) if i % 2 == 0]
        test = [x for i, x in enumerate(per_image) if i % 2 == 1]
        V = np.concatenate([t[1] for t in train])
        R = np.concatenate([t[0] for t in train])
        G, H = V.T @ V, V.T @ R
        width = math.ceil(c / args.slices)
        base = sum(gaussian_bits(np.round(t[0]), t[2]) for t in test)
        res = {"y_bits_test": base, "file_bits": sum(bits_of_file)}
        for order in ("channels", "slices"):
            for ridge in ridges:
                A = np.zeros((c, c))
                for ch in range(1, c):
                    b = ch if order == "channels" else (ch // width) * width
                    if b:
                        A[:b, ch] = np.linalg.solve(G[:b, :b] + ridge * np.eye(b), H[:b, ch])
                bits = sum(gaussian_bits(np.round(t[0] - t[1] @ A), t[2]) for t in test)
                if order not in res or 1 - bits / base > res[order]["y_bits_saved"]:
                    res[order] = {"y_bits_saved": 1 - bits / base, "ridge": ridge}
        res["y_share_of_file"] = base / sum(bits_of_file[1::2])  # the test images' files, coded above
        for order in ("channels", "slices"):
            res[order]["file_bits_saved"] = res[order]["y_bits_saved"] * res["y_share_of_file"]
        report["qualities"][f"{q:g}"] = res
        print(f"q{q:g}: y is {res['y_share_of_file']:.1%} of the files; y's bits saved on the test images: every "
              f"earlier channel {res['channels']['y_bits_saved']:.2%}, earlier {args.slices} slices only "
              f"{res['slices']['y_bits_saved']:.2%}", flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
