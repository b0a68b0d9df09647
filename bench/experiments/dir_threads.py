"""A directory of images in one process: one file at a time (the codec's threads on both cores) against two files
at a time on two threads (each engine on one core), after a warm-up image. Issue 23's directory target.

    NEURALCODEC_THREADS=1 python bench/experiments/dir_threads.py --concurrent 2   # two at a time
    python bench/experiments/dir_threads.py --concurrent 1                         # one at a time
"""
import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from neuralcodec import api
from neuralcodec.settings import DecodeSettings, EncodeSettings

KODAK = Path(__file__).resolve().parents[3] / "shared" / "data" / "kodak"
ap = argparse.ArgumentParser()
ap.add_argument("--concurrent", type=int, default=1)
ap.add_argument("--direction", default="compress")
a = ap.parse_args()
imgs = sorted(KODAK.glob("kodim*.png"))
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    es, ds = EncodeSettings(), DecodeSettings()
    for p in imgs:  # the .nic inputs of a decode run, and the warm-up
        api.compress_file(p, tmp / (p.stem + ".nic"), es)
    src = [tmp / (p.stem + ".nic") for p in imgs] if a.direction == "decompress" else imgs
    conv = (lambda p: api.decompress_file(p, tmp / (p.stem + "-o.png"), ds)) if a.direction == "decompress" \
        else (lambda p: api.compress_file(p, tmp / (p.stem + "-o.nic"), es))
    conv(src[0])
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        with ThreadPoolExecutor(a.concurrent) as pool:
            list(pool.map(conv, src))
        walls.append(time.perf_counter() - t0)
    print(a.direction, "concurrent", a.concurrent, "wall s", [round(w, 3) for w in walls],
          "median per image", round(statistics.median(walls) / len(src), 4))
