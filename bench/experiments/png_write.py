"""The decoder's PNG writer (codec/format/png.py) against Pillow's (level 3, as the decoder wrote before), on
decoded Kodak images, alternating in one process: median time per image on 1 and 2 threads (and with the bands
not primed with the window before them), the median of the per-image ratios, and bytes against Pillow's. Run it
on a quiet machine.

    python bench/experiments/png_write.py [--images 8] [--quality 50] [--repeat 5]
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

KODAK = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "kodak"

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--images", type=int, default=8)
ap.add_argument("--quality", type=float, default=50)
ap.add_argument("--repeat", type=int, default=5)
a = ap.parse_args()
decoded = []
for f in sorted(KODAK.glob("*.png"))[:a.images]:
    rgb = np.asarray(Image.open(f).convert("RGB"))
    decoded.append(np.asarray(neuralcodec.decompress(neuralcodec.compress(rgb, a.quality))))


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


arms = {"pillow level 3": pillow, "png.py 1 thread": lambda x: png.encode(x, threads=1),
        "png.py 2 threads": lambda x: png.encode(x, threads=2), "png.py 2 threads, bands unprimed": unprimed}
times = {k: [] for k in arms}
size = {k: 0 for k in arms}
for x in decoded:
    per = {k: [] for k in arms}
    for _ in range(a.repeat):
        for k, f in arms.items():
            t0 = time.perf_counter()
            out = f(x)
            per[k].append(time.perf_counter() - t0)
    for k in arms:
        times[k].append(statistics.median(per[k]))
        size[k] += len(arms[k](x))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.encode(x, threads=2)))), x)
base = times["pillow level 3"]
for k in arms:
    ratio = statistics.median(t / b for t, b in zip(times[k], base))
    print(f"| {k} | {1e3 * statistics.median(times[k]):.1f} ms | {ratio:.2f}x | {size[k] / size['pillow level 3']:.4f} |")
