"""ONNX Runtime's spin-waiting after a run, on and off: in-process encode and decode of a Kodak image.

    python bench/experiments/ort_spinning.py [--image kodim05.png] [--rounds 2] [--calls 7]

After a run ONNX Runtime's intra-op workers spin for a while before they sleep. In an encode the analysis is
followed by numpy work on both cores (the integer prior's BLAS threads), so a spinning worker competes with it.
Each arm runs in its own fresh process (the option is fixed when a session is made), alternating, ROUNDS times;
each reports the median of CALLS encodes and decodes at q 50 with the model loaded. Arms: ONNX Runtime's default
(spin), no spinning at all (``session.intra_op.allow_spinning`` 0: workers also sleep between a run's operators),
and spinning within a run but not after it (``session.force_spinning_stop`` 1).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KODAK = HERE.parents[2] / "shared" / "data" / "kodak"

ARM = """
import statistics, sys, time
import numpy as np
import onnxruntime as ort
from PIL import Image
spin, path, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
ARMS = {"spin": {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "0"},
        "no spin": {"session.intra_op.allow_spinning": "0", "session.force_spinning_stop": "0"},
        "spin, stop after a run": {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"}}
_SO = ort.SessionOptions
class SO(_SO):
    def __init__(self):
        super().__init__()
        self._fixed = ARMS[spin]
        for k, v in self._fixed.items():
            super().add_session_config_entry(k, v)
    def add_session_config_entry(self, key, value):
        if key not in self._fixed:
            super().add_session_config_entry(key, value)
ort.SessionOptions = SO
import neuralcodec
img = np.asarray(Image.open(path).convert("RGB"))
data = neuralcodec.compress(img, 50)
neuralcodec.decompress(data)
enc, dec = [], []
for _ in range(calls):
    t0 = time.perf_counter(); data = neuralcodec.compress(img, 50); enc.append(time.perf_counter() - t0)
    t0 = time.perf_counter(); neuralcodec.decompress(data); dec.append(time.perf_counter() - t0)
print(statistics.median(enc), statistics.median(dec))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=KODAK / "kodim05.png")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--calls", type=int, default=7)
    args = ap.parse_args()
    print(f"{'arm':24} encode s  decode s  (median in process, fresh process per arm)")
    for _ in range(args.rounds):
        for arm in ("spin", "no spin", "spin, stop after a run"):
            out = subprocess.run([sys.executable, "-c", ARM, arm, str(args.image), str(args.calls)],
                                 capture_output=True, text=True, check=True).stdout.split()
            print(f"{arm:24} {float(out[0]):8.3f} {float(out[1]):9.3f}", flush=True)


if __name__ == "__main__":
    main()
