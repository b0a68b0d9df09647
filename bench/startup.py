"""Start-up costs, each in fresh processes (median of --repeat): what a one-image CLI call pays before coding.

    python bench/startup.py [--repeat 3]

Rows: `neuralcodec --help`; `import torch`; `import compressai` (what coding would pay if it used compressai's
layers; it does not); loading the shipped weights; a whole `neuralcodec compress` of a 64x64 image.
Writes bench/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent


def wall(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        img = Path(tmp) / "tiny.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(img)
        rows = {
            "neuralcodec --help": [py, "-m", "neuralcodec", "--help"],
            "python (nothing)": [py, "-c", "pass"],
            "import torch": [py, "-c", "import torch"],
            "import compressai": [py, "-W", "ignore", "-c", "import compressai"],
            "load shipped weights (coding model)": [py, "-c", "from neuralcodec.api import load_codec; load_codec()"],
            "neuralcodec compress 64x64": [py, "-m", "neuralcodec", "compress", str(img), "-o",
                                           str(Path(tmp) / "t.nic"), "-f", "--quiet"],
        }
        res = {}
        for name, cmd in rows.items():
            wall(cmd)  # warm the page cache
            res[name] = round(statistics.median(wall(cmd) for _ in range(a.repeat)), 3)
            print(f"| {name} | {res[name]} s |", flush=True)
    out = HERE / "results" / "startup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
