"""One-tile analyses with and without ONNX Runtime's memory arena, in one process that codes several images (what a
directory run or a server does; issue 23's directory target).

    python bench/experiments/analysis_arena.py [--images 8] [--rounds 2] [--quality 50]

Encodes the first --images Kodak images in turns with each arm (monkeypatched: ``OrtTransforms.analysis`` as a
first image runs it, without the arena, and with the arena), median encode time per image. A single call's
first analysis stays without the arena (peak 322 instead of 437 MiB, issue 23's 400 MB bound); from a process's
second image on, the backend keeps the arena. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quality", type=float, default=50)
    a = ap.parse_args()
    import neuralcodec
    from neuralcodec.pipeline import onnx_backend
    from neuralcodec.pipeline.tiling import TiledTransforms

    kodak = HERE.parent.parent.parent / "shared" / "data" / "kodak"
    imgs = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(kodak.glob("*.png"))[: a.images]]
    neuralcodec.compress(imgs[0], a.quality)  # sessions open, bundle built

    def arm(arena: bool):
        def analysis(self, rgb, t, tile=None):
            return self._memory(arena, False, TiledTransforms.analysis, self, rgb, t, tile)
        return analysis

    real = onnx_backend.OrtTransforms.analysis
    times = {"without the arena": [], "with the arena": []}
    try:
        for _ in range(a.rounds):
            for name, arena in (("without the arena", False), ("with the arena", True)):
                onnx_backend.OrtTransforms.analysis = arm(arena)
                for img in imgs:
                    t0 = time.perf_counter()
                    neuralcodec.compress(img, a.quality)
                    times[name].append(time.perf_counter() - t0)
    finally:
        onnx_backend.OrtTransforms.analysis = real
    for name, v in times.items():
        print(f"{name}: median encode {statistics.median(v):.3f} s per image ({len(v)} encodes)")


if __name__ == "__main__":
    main()
