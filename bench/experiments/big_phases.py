"""A big image's decode and encode per megapixel, phase by phase, against a Kodak image's, in one process.

    python bench/experiments/big_phases.py [--size 5120] [--quality 50]

Codes kodim05 and a SIZE x SIZE Kodak mosaic (bench/big_images.py's) on the ONNX backend in one process, twice
each, alternating, and reports the best seconds per megapixel of: entropy decoding with the integer
hyper-synthesis, the synthesis (tiled), the ramp and deblocking filters, a PNG write to memory (zlib level 3),
and a whole encode; then the big image's ratio to kodim05 per phase (issue 23: within 1.3x). Where
bench/big_images.py times whole CLI calls, this says which phase does not scale.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from big_images import mosaic  # noqa: E402

import neuralcodec  # noqa: E402
from neuralcodec.api import load_codec, read_container  # noqa: E402
from neuralcodec.pipeline import deblock  # noqa: E402

KODAK = HERE.parents[2] / "shared" / "data" / "kodak"


def phases(codec, data: bytes, rgb: np.ndarray, quality: float) -> dict:
    t = {}
    t0 = time.perf_counter()
    c = read_container(data)
    h = c.header
    decoded = codec.decode_latents(h, c.chunks)
    t["entropy decoding + integer h_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = codec.transforms.synthesis(codec.synthesis_inputs(decoded), codec.t(h.rate), h.height, h.width,
                                     codec.geometry_of(h))
    t["synthesis"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if h.ramp:
        deblock.ramp(out, codec.grid)
    if h.deblock:
        deblock.deblock(out, codec.grid, *deblock.thresholds(h.rate))
    t["filters"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    Image.fromarray(out).save(io.BytesIO(), format="PNG", compress_level=3)
    t["PNG write"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    neuralcodec.compress(rgb, quality, backend="onnx")
    t["encode"] = time.perf_counter() - t0
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=5120)
    ap.add_argument("--quality", type=float, default=50)
    args = ap.parse_args()
    codec = load_codec(backend="onnx")
    images = {"kodim05": np.asarray(Image.open(KODAK / "kodim05.png").convert("RGB")),
              f"{args.size}²": np.asarray(mosaic(KODAK, args.size))}
    files = {k: neuralcodec.compress(v, args.quality, backend="onnx") for k, v in images.items()}
    best: dict[str, dict] = {}
    for _ in range(2):
        for k, data in files.items():
            mpx = images[k].shape[0] * images[k].shape[1] / 1e6
            for phase, s in phases(codec, data, images[k], args.quality).items():
                best.setdefault(k, {})[phase] = min(best.get(k, {}).get(phase, np.inf), s / mpx)
    small, big = best.values()
    print(f"{'phase':32} {'kodim05 s/Mpx':>14} {f'{args.size}² s/Mpx':>14} {'ratio':>6}")
    for phase in small:
        print(f"{phase:32} {small[phase]:14.3f} {big[phase]:14.3f} {big[phase] / small[phase]:6.2f}")


if __name__ == "__main__":
    main()
