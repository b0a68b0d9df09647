"""Rate-distortion curves and the Bjontegaard delta rate (pchip in log rate, as the anchors' tables use)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def bd_rate(rate_a, dist_a, rate_b, dist_b) -> float:
    """Average rate difference of curve b against curve a at equal distortion, in percent (negative: b is
    smaller). Both curves are interpolated with pchip of log10(rate) over distortion and integrated exactly
    over the distortion interval they share."""
    from scipy.interpolate import PchipInterpolator

    def curve(r, d):
        d, r = np.asarray(d, float), np.log10(np.asarray(r, float))
        order = np.argsort(d)
        d, r = d[order], r[order]
        keep = np.concatenate([[True], np.diff(d) > 0])
        return PchipInterpolator(d[keep], r[keep])

    lo = max(min(dist_a), min(dist_b))
    hi = min(max(dist_a), max(dist_b))
    if hi <= lo:
        return float("nan")
    fa, fb = curve(rate_a, dist_a), curve(rate_b, dist_b)
    ia = fa.antiderivative()(hi) - fa.antiderivative()(lo)
    ib = fb.antiderivative()(hi) - fb.antiderivative()(lo)
    return float((10 ** ((ib - ia) / (hi - lo)) - 1) * 100)


def msssim_db(v):
    return -10 * np.log10(1 - np.asarray(v, float))


def load_anchor(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())["results"]
