"""Where one CLI call's time goes (issue 23), each in fresh processes, median of --repeat.

    python bench/startup.py [--repeat 3] [--image ../shared/data/kodak/kodim05.png]

Part 1, whole calls: `neuralcodec --help`, `import torch`, `import onnxruntime`, and `neuralcodec compress` /
`decompress` of one Kodak image on each backend (the ONNX bundle already built: what every call after the first
pays). Part 2, the phases of one call, timed inside a fresh process that does what the CLI does, step by step:
imports, weights load (safetensors + digest), codec build (ONNX sessions or the torch model), then for a
decode the entropy decoding (integer hyper-synthesis and range decoding), the synthesis, the grid filters, the PNG
encode, the file write; for an
encode the image read, the analysis, the levels above y and their quantization, the range coding, the write.
Writes bench/results/startup.json. Run it on a quiet machine.
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

from package_bytecode import compile_package

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"

PHASES = r'''
import json, sys, time
T = time.perf_counter
marks = [("start", T())]
def mark(name): marks.append((name, T()))
direction, backend, src, dst = sys.argv[1:5]
import numpy as np
from PIL import Image
import neuralcodec
from neuralcodec import api
from neuralcodec.settings import DecodeSettings, EncodeSettings
mark("imports")
from neuralcodec.zoo import weights_io

w = weights_io.load(None)
mark("weights load + digest")
s = (EncodeSettings if direction == "compress" else DecodeSettings)(backend=backend)
codec = api._codec_for(s)
if backend == "onnx":
    codec.transforms._session("analysis" if direction == "compress" else "synthesis")
mark("codec build (" + ("ONNX sessions" if backend == "onnx" else "torch model") + ")")
if direction == "decompress":
    c = api.read_container(open(src, "rb").read())
    dec = codec.decode_latents(c.header, c.chunks)
    hats = codec.synthesis_inputs(dec)
    mark("entropy decoding (integer h_s + range decoder)")
    rgb = codec.transforms.synthesis(hats, codec.t(c.header.rate), c.header.height, c.header.width,
                                     codec.geometry_of(c.header))
    mark("synthesis")
    codec.filter(rgb, c.header)
    mark("filters (ramp, deblocking)")
    data = api._encoded(Image.fromarray(rgb), "PNG", rgb)  # as decompress_file
    mark("PNG encode")
    from neuralcodec.format.fileio import write_atomic
    write_atomic(dst, data)
    mark("file write")
else:
    from neuralcodec.format import imaging
    from neuralcodec.rate import rate_of_quality
    planes = imaging.split(imaging.open_image(src))
    mark("image read")
    rate = rate_of_quality(50)
    y = codec.transforms.analysis(planes.rgb, codec.t(rate))
    mark("analysis")
    decoded = codec.quantize(y, rate)
    mark("upper levels + quantization (integer h_s)")
    chunks = [st.encode(d) for st, d in zip(codec.stages, decoded)]
    mark("range coding")
    open(dst, "wb").write(b"".join(chunks))
    mark("write")
print(json.dumps([(n, round(t - marks[i][1], 4)) for i, (n, t) in enumerate(marks[1:])]))
'''


def wall(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--image", type=Path, default=KODAK / "kodim05.png")
    a = ap.parse_args()
    compile_package()  # as an installed package has it
    py = sys.executable
    cli = [py, "-m", "neuralcodec"]
    res: dict = {"image": a.image.name, "calls": {}, "phases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        nic, png = str(Path(tmp) / "a.nic"), str(Path(tmp) / "a.png")
        subprocess.run(cli + ["compress", str(a.image), "-o", nic, "-f", "--quiet"], check=True)  # builds the bundle
        rows = {
            "python (nothing)": [py, "-c", "pass"],
            "neuralcodec --help": cli + ["--help"],
            "import torch": [py, "-c", "import torch"],
            "import onnxruntime": [py, "-c", "import onnxruntime"],
        }
        for backend in ("onnx", "torch"):
            rows[f"compress ({backend})"] = cli + ["compress", str(a.image), "-o", nic, "-f", "--quiet",
                                                   "--backend", backend]
            rows[f"decompress ({backend})"] = cli + ["decompress", nic, "-o", png, "-f", "--quiet",
                                                     "--backend", backend]
        for name, cmd in rows.items():
            wall(cmd)  # warm the page cache
            res["calls"][name] = round(statistics.median(wall(cmd) for _ in range(a.repeat)), 3)
            print(f"| {name} | {res['calls'][name]} s |", flush=True)
        for direction, src, dst in (("decompress", nic, png), ("compress", str(a.image), nic)):
            for backend in ("onnx", "torch"):
                runs = [json.loads(subprocess.run([py, "-c", PHASES, direction, backend, src, dst], check=True,
                                                  capture_output=True, text=True).stdout.splitlines()[-1])
                        for _ in range(a.repeat)]
                phases = {n: round(statistics.median(r[i][1] for r in runs), 3) for i, (n, _) in enumerate(runs[0])}
                res["phases"][f"{direction} ({backend})"] = phases
                print(f"\n{direction} ({backend}), phases (s): " + ", ".join(f"{k} {v}" for k, v in phases.items())
                      + f"; sum {sum(phases.values()):.3f}", flush=True)
    out = HERE / "results" / "startup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
