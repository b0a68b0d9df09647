"""Do new weights beat the shipped ones at every rate? Compares two `bench/kodak_rd.py` results.

    python bench/compare_weights.py bench/results/kodak/neuralcodec.json NEW/neuralcodec.json

For each point of the new curve: its PSNR minus the old curve's PSNR at the same bpp (pchip in log bpp inside
the old curve's range; within a factor of 1.1 in bpp beyond either end, the higher of two lines there, the end
segment's and the curve's end tangent, so that the bar is never lower than either continuation; further out, not
compared); then BD-rate new vs old (PSNR and MS-SSIM). Exit status 0 when the new curve is better at every
comparable point and in BD-rate, else 1: the rule for shipping new weights.

A point where both results hold, for every image, files of the same size decoding to the same pixels (SHA-256;
`kodak_rd.py` records both since 2026-12-07) is *unchanged*: users get the very same pictures at the same cost, so
it neither blocks nor counts as a gain (weights that change only the top analysis, `--prior-from`, leave the rates
below its split so). Measure both curves on one machine for this: float noise between machines changes pixels.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from scipy.interpolate import PchipInterpolator

from neuralcodec.evaluation.rd import bd_rate, msssim_db


def unchanged_qualities(old: dict, new: dict) -> set[float]:
    """Qualities at which every image's file size and decoded pixels' SHA-256 agree in both results."""
    def by_point(res):
        out = {}
        for r in res.get("per_image", []):
            if "decoded_sha256" not in r:
                return {}
            out.setdefault(r["quality"], {})[r["image"]] = (r["bytes"], r["decoded_sha256"])
        return out
    a, b = by_point(old), by_point(new)
    return {q for q in a if q in b and a[q] == b[q]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    a = ap.parse_args()
    old_all, new_all = (json.load(open(p)) for p in (a.old, a.new))
    old, new = old_all["results"], new_all["results"]
    same = unchanged_qualities(old_all, new_all)
    x, y = np.log(old["bpp"]), np.asarray(old["psnr-rgb"])
    f = PchipInterpolator(x, y)
    slope = f.derivative()
    better = True
    for q, b, p in zip(new["quality"], new["bpp"], new["psnr-rgb"]):
        lb = np.log(b)
        if q in same:
            print(f"q{q:5.1f}  {b:.4f} bpp  {p:.3f} dB  (unchanged: the same files and pixels as old)")
        elif old["bpp"][0] <= b <= old["bpp"][-1]:
            gain = p - float(f(lb))
            better &= gain > 0
            print(f"q{q:5.1f}  {b:.4f} bpp  {p:.3f} dB  ({gain:+.3f} dB vs old at equal bpp)")
        elif min(abs(lb - x[0]), abs(lb - x[-1])) <= np.log(1.1):
            i, j = (0, 1) if lb < x[0] else (-1, -2)  # the end, and its neighbour
            chord = (y[j] - y[i]) / (x[j] - x[i])
            gain = p - (y[i] + max(chord * (lb - x[i]), float(slope(x[i])) * (lb - x[i])))
            better &= gain > 0
            print(f"q{q:5.1f}  {b:.4f} bpp  {p:.3f} dB  ({gain:+.3f} dB vs old at equal bpp, extrapolated)")
        else:
            print(f"q{q:5.1f}  {b:.4f} bpp  {p:.3f} dB  (outside the old curve's range)")
    bd_p = bd_rate(old["bpp"], old["psnr-rgb"], new["bpp"], new["psnr-rgb"])
    bd_m = bd_rate(old["bpp"], msssim_db(old["ms-ssim"]), new["bpp"], msssim_db(new["ms-ssim"]))
    print(f"BD-rate new vs old: PSNR {bd_p:+.2f} %, MS-SSIM {bd_m:+.2f} %")
    better &= bd_p < 0
    if len(same) == len(new["quality"]):
        print("new weights change no rate: the same files and pixels everywhere")
        sys.exit(1)
    verdict = "better at every rate" + (" they change" if same else "") if better else "NOT better at every rate"
    print(f"new weights are {verdict}" + (f" (unchanged at q {', '.join(f'{q:g}' for q in sorted(same))})" if same else ""))
    sys.exit(0 if better else 1)


if __name__ == "__main__":
    main()
