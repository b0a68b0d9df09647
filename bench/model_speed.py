"""In-process encode and decode time of several weights on Kodak, alternating, in one run.

    python bench/model_speed.py --weights flagship runs/flagship-v2.safetensors [--images 6] [--quality 50]

The model is loaded once per weights (what a directory run pays per image); each image is encoded and decoded
with each weights in turn, so machine noise hits all alike. Prints the median seconds per image and the ratios
to the first weights. For CLI start-up and AVIF beside it, see speed.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import neuralcodec

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="+", default=["flagship"])
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--quality", type=float, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--output", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    paths = sorted(KODAK.glob("kodim*.png"))
    paths = paths[:: max(1, len(paths) // args.images)][: args.images]
    times = {w: {"encode": [], "decode": [], "bytes": []} for w in args.weights}
    for w in args.weights:  # load and warm up
        neuralcodec.decompress(neuralcodec.compress(np.zeros((64, 64, 3), np.uint8), args.quality, weights=w), weights=w)
    for p in paths:
        img = np.asarray(Image.open(p).convert("RGB"))
        for w in args.weights:
            t0 = time.perf_counter()
            data = neuralcodec.compress(img, args.quality, weights=w)
            t1 = time.perf_counter()
            neuralcodec.decompress(data, weights=w)
            t2 = time.perf_counter()
            times[w]["encode"].append(t1 - t0)
            times[w]["decode"].append(t2 - t1)
            times[w]["bytes"].append(len(data))
    base = args.weights[0]
    rows = {}
    for w, d in times.items():
        enc, dec = statistics.median(d["encode"]), statistics.median(d["decode"])
        rows[w] = {"encode_s": round(enc, 3), "decode_s": round(dec, 3),
                   "encode_ratio": round(enc / statistics.median(times[base]["encode"]), 3),
                   "decode_ratio": round(dec / statistics.median(times[base]["decode"]), 3),
                   "mean_bytes": round(statistics.mean(d["bytes"]))}
        print(f"{w}: encode {enc:.3f} s ({rows[w]['encode_ratio']}x), decode {dec:.3f} s ({rows[w]['decode_ratio']}x), "
              f"{rows[w]['mean_bytes']} B")
    if args.output:
        args.output.write_text(json.dumps({"images": [p.name for p in paths], "quality": args.quality,
                                           "threads": args.threads, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
