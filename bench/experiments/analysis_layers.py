"""Where the encoder's analysis spends its time, layer by layer (OpenVINO's own per-node counters).

    python bench/experiments/analysis_layers.py [--weights flagship] [--threads 1] [--repeat 5]

The analysis as `compress` runs it on a CPU with bfloat16 (codec/pipeline/onnx_backend.py: the bundle's
analysis.onnx, pixels 0..255, bfloat16 inference), compiled again with PERF_COUNT on and run on a Kodak-size
input (768 x 512, t = 0.5): each node's median time over --repeat runs after two warm-ups, summed by layer
(g_a.0, g_a.1, ...), with the layer's share of the whole and its multiply-adds per input pixel (convolutions
only, from the graph's shapes). Shares are what to read on a loaded machine; times need a quiet one. Needs
`pip install openvino` and bfloat16 hardware.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics

H, W = 512, 768


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="weights name or path (default: the flagship)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    os.environ["NEURALCODEC_THREADS"] = str(a.threads)

    import numpy as np
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    from neuralcodec.api import load_codec

    bundle = load_codec(a.weights, backend="onnx", precision="bf16").transforms.directory
    core = ov.Core()
    model = core.read_model(str(bundle / "analysis.onnx"))
    model.reshape({"x": [1, 3, H, W], "t": [1]})

    def layer(name: str) -> str:  # "/g_a.2/Conv/WithoutBiases" -> "g_a.2"
        m = re.match(r"/?([a-z_]+\.\d+|[a-z_]+)", name)
        return m.group(1) if m else name

    macs = collections.Counter()
    for op in model.get_ops():
        if op.get_type_name() == "Convolution":
            out = op.get_output_partial_shape(0).to_shape()  # N, O, h, w
            kernel = op.input_value(1).get_shape()  # O, C, kh, kw
            macs[layer(op.get_friendly_name())] += int(np.prod(out) * np.prod(kernel[1:])) / (H * W)
    ppp = PrePostProcessor(model)
    ppp.input("x").preprocess().scale(255.0)
    compiled = core.compile_model(ppp.build(), "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": a.threads, "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False, "PERF_COUNT": True})
    request = compiled.create_infer_request()
    feeds = {"x": np.random.default_rng(0).integers(0, 256, (1, 3, H, W)).astype(np.float32),
             "t": np.full((1,), 0.5, np.float32)}
    for _ in range(2):
        request.infer(feeds)
    runs = []
    for _ in range(a.repeat):
        request.infer(feeds)
        per = collections.Counter()
        for p in request.profiling_info:
            per[layer(p.node_name)] += p.real_time.total_seconds() * 1000
        runs.append(per)
    names = sorted({n for r in runs for n in r}, key=lambda n: -statistics.median(r[n] for r in runs))
    total = statistics.median(sum(r.values()) for r in runs)
    print(f"analysis of a {W}x{H} input, {a.threads} thread(s), median of {a.repeat}: {total:.1f} ms, "
          f"{sum(macs.values()) / 1000:.1f}k multiply-adds per pixel")
    print(f"{'layer':<12} {'ms':>7} {'share':>6} {'kMAC/px':>8}")
    for n in names:
        ms = statistics.median(r[n] for r in runs)
        if ms >= 0.05 * total / 100 or n in macs:
            print(f"{n:<12} {ms:7.1f} {100 * ms / total:5.1f}% {macs.get(n, 0) / 1000:8.2f}")


if __name__ == "__main__":
    main()
