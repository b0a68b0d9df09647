"""A big image's decode and encode per megapixel, phase by phase, against a Kodak image's, in one process.

    python bench/experiments/big_phases.py [--size 5120] [--quality 50] [--repeat 2] [--decode-only]

Codes kodim05 and a SIZE x SIZE Kodak mosaic (bench/big_images.py's) on the ONNX backend in one process, REPEAT
times each, alternating, and reports the best seconds per megapixel of: entropy decoding with the integer
hyper-synthesis (the integer prior, then the range decoding of y, then y's values), the synthesis (tiled), the ramp
and deblocking filters, the PNG encode (the CLI's, to memory), the file write (the CLI's: fsync, rename), and a
whole encode; then the big image's ratio to kodim05 per phase (issue 23: within 1.3x). Where
bench/big_images.py times whole CLI calls, this says which phase does not scale.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from big_images import mosaic  # noqa: E402

import neuralcodec  # noqa: E402
from neuralcodec.api import image_bytes, load_codec, read_container  # noqa: E402
from neuralcodec.coding import entropy  # noqa: E402
from neuralcodec.format.fileio import write_atomic  # noqa: E402
from neuralcodec.pipeline import deblock  # noqa: E402

KODAK = HERE.parents[2] / "shared" / "data" / "kodak"


def phases(codec, data: bytes, rgb: np.ndarray, quality: float | None, tmp: Path) -> dict:
    t = {}
    t0 = time.perf_counter()
    c = read_container(data)
    h = c.header
    (top, stage), (ztag, ytag) = codec.stages, codec.tags  # the flagship's two levels
    shapes = codec.latent_shapes(h.height, h.width)
    z = top.decode(c.chunks[ztag], shapes[0], None, h.rate, value=False, context=True)
    idx, means = np.empty(shapes[1], np.uint8), np.empty(shapes[1], np.float32)
    for r0, r1, i, mu in stage.parameter_bands(z, h.rate):
        idx[:, r0:r1], means[:, r0:r1] = i, mu
    t["integer prior (z, h_s bands)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sym = entropy.decode(c.chunks[ytag], idx, stage.tables)
    t["range decoding of y"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    decoded = [z, stage._decoded(sym, idx, means, None)]
    t["y's values"] = time.perf_counter() - t0
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
    png = image_bytes(Image.fromarray(out), "png")
    t["PNG encode (to memory)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_atomic(tmp / "out.png", png)
    t["file write (fsync)"] = time.perf_counter() - t0
    if quality is not None:
        t0 = time.perf_counter()
        neuralcodec.compress(rgb, quality, backend="onnx")
        t["encode"] = time.perf_counter() - t0
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=5120)
    ap.add_argument("--quality", type=float, default=50)
    ap.add_argument("--repeat", type=int, default=2, help="passes over both images (best of them reported)")
    ap.add_argument("--decode-only", action="store_true", help="leave out the encode phase (8192^2: minutes)")
    ap.add_argument("--tmp", default=".", help="where the decoded PNG is written (a disk, like a user's output)")
    args = ap.parse_args()
    codec = load_codec(backend="onnx")
    images = {"kodim05": np.asarray(Image.open(KODAK / "kodim05.png").convert("RGB")),
              f"{args.size}²": np.asarray(mosaic(KODAK, args.size))}
    files = {k: neuralcodec.compress(v, args.quality, backend="onnx") for k, v in images.items()}
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for _ in range(args.repeat):
            for k, data in files.items():
                mpx = images[k].shape[0] * images[k].shape[1] / 1e6
                q = None if args.decode_only else args.quality
                for phase, s in phases(codec, data, images[k], q, Path(tmp)).items():
                    best.setdefault(k, {})[phase] = min(best.get(k, {}).get(phase, np.inf), s / mpx)
    small, big = best.values()
    print(f"{'phase':32} {'kodim05 s/Mpx':>14} {f'{args.size}² s/Mpx':>14} {'ratio':>6}")
    for phase in small:
        print(f"{phase:32} {small[phase]:14.4f} {big[phase]:14.4f} {big[phase] / small[phase]:6.2f}")
    decode = [p for p in small if p != "encode"]
    total = [sum(b[p] for p in decode) for b in (small, big)]
    print(f"{'decode, all phases':32} {total[0]:14.4f} {total[1]:14.4f} {total[1] / total[0]:6.2f}")


if __name__ == "__main__":
    main()
