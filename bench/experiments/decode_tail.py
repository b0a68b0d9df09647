"""The end of a decode on decoded Kodak images, alternating in one process: the grid filters (ramp, deblocking)
on one thread and on two, and the PNG writer (codec/format/png.py) against Pillow's (level 3, as the decoder
wrote before) on one and two threads, with its bands primed with the window before them and without. Median
time per image, the median of the per-image ratios, bytes against Pillow's. Run it on a quiet machine.

    python bench/experiments/decode_tail.py [--images 8] [--quality 50] [--repeat 5]
"""

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

import neuralcodec
from neuralcodec.format import png
from neuralcodec.pipeline import deblock

KODAK = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "kodak"

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--images", type=int, default=8)
ap.add_argument("--quality", type=float, default=50)
ap.add_argument("--repeat", type=int, default=5)
a = ap.parse_args()
raw, decoded, rates = [], [], []
for f in sorted(KODAK.glob("*.png"))[:a.images]:
    rgb = np.asarray(Image.open(f).convert("RGB"))
    data = neuralcodec.compress(rgb, a.quality)
    header = neuralcodec.api.read_container(data).header
    raw.append(np.asarray(neuralcodec.decompress(data, deblock=False)))  # the synthesis' pixels, unfiltered
    decoded.append(np.asarray(neuralcodec.decompress(data)))
    rates.append((header.ramp, header.deblock, header.rate))


def filters(i, threads):
    x = raw[i].copy()
    ramp, deblocking, rate = rates[i]
    if ramp:
        deblock.ramp(x, 16, threads=threads)
    if deblocking:
        deblock.deblock(x, 16, *deblock.thresholds(rate), threads=threads)
    return x


def pillow(x):
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def unprimed(x):  # each band's deflate stream without the window before it
    window, png.WINDOW = png.WINDOW, 1
    try:
        return png.encode(x, threads=2)
    finally:
        png.WINDOW = window


def table(arms, inputs, sized):
    times = {k: [] for k in arms}
    size = {k: 0 for k in arms}
    for i, x in enumerate(inputs):
        per = {k: [] for k in arms}
        for _ in range(a.repeat):
            for k, f in arms.items():
                t0 = time.perf_counter()
                out = f(i, x)
                per[k].append(time.perf_counter() - t0)
                if sized and _ == 0:
                    size[k] += len(out)
        for k in arms:
            times[k].append(statistics.median(per[k]))
    base = next(iter(arms))
    for k in arms:
        ratio = statistics.median(t / b for t, b in zip(times[k], times[base]))
        print(f"| {k} | {1e3 * statistics.median(times[k]):.1f} ms | {ratio:.2f}x |"
              + (f" {size[k] / size[base]:.5f} ({size[k]:,} B) |" if sized else ""))


for i in range(len(raw)):  # the same pixels on any number of threads, and what the decoder writes
    assert np.array_equal(filters(i, 2), decoded[i]) and np.array_equal(filters(i, 1), decoded[i])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.encode(decoded[i], threads=2)))), decoded[i])
print("| grid filters | median per image | vs one thread |\n|---|---|---|")
table({"1 thread": lambda i, x: filters(i, 1), "2 threads": lambda i, x: filters(i, 2)}, raw, False)
print("\n| PNG writer | median per image | vs Pillow | bytes vs Pillow |\n|---|---|---|---|")
table({"Pillow, level 3": lambda i, x: pillow(x), "png.py, 1 thread": lambda i, x: png.encode(x, threads=1),
       "png.py, 2 threads": lambda i, x: png.encode(x, threads=2),
       "png.py, 2 threads, bands unprimed": lambda i, x: unprimed(x)}, decoded, True)
