"""Symbols per second of neuralcodec's range-coding step (entropy.encode / entropy.decode) on a realistic latent.

    python bench/entropy_speed.py [--weights flagship] [--size 2048] [--quality 50]

Codes the y latent of a Kodak mosaic (S x S pixels) with the shipped tables and indices, exactly as the
codec does, and reports M symbols/s for encode and decode beside the whole compress time of that image, so
one can see whether entropy coding is the bottleneck. Writes bench/results/entropy_speed.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from neuralcodec.coding import entropy
from neuralcodec.api import load_codec

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--quality", type=float, default=50)
    a = ap.parse_args()
    from big_images import mosaic
    from neuralcodec.rate import rate_of_quality

    rgb = np.asarray(mosaic(HERE.parent.parent / "shared" / "data" / "kodak", a.size))
    codec = load_codec(a.weights, "cpu")
    rate = rate_of_quality(a.quality)
    t0 = time.perf_counter()
    chunks, _ = codec.encode(rgb, rate)
    whole = time.perf_counter() - t0
    y = codec.quantize(codec.transforms.analysis(rgb, codec.t(rate)), rate)[-1]
    y_sym, idx, tables = y.symbols, y.indexes, codec.stages[-1].tables
    t0 = time.perf_counter()
    data = entropy.encode(y_sym, idx, tables)
    enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = entropy.decode(data, idx, tables)
    dec = time.perf_counter() - t0
    assert np.array_equal(back, y_sym)
    n = y_sym.size
    res = {"image": f"{a.size}x{a.size}", "symbols": n, "bits_per_symbol": round(8 * len(data) / n, 4),
           "encode_msym_per_s": round(n / enc / 1e6, 2), "decode_msym_per_s": round(n / dec / 1e6, 2),
           "encode_s": round(enc, 3), "decode_s": round(dec, 3), "whole_compress_s": round(whole, 3),
           "entropy_share_of_compress": round(enc / whole, 3)}
    print(json.dumps(res, indent=1))
    out = HERE / "results" / "entropy_speed.json"
    out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
