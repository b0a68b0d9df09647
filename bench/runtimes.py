"""Inference runtimes for the CPU backend, side by side on the same ONNX graphs (issue 23): torch (eager, the
model itself), ONNX Runtime's CPU provider, and OpenVINO (if installed), alternating in one run.

    python bench/runtimes.py [--weights flagship] [--size 512x768] [--repeat 5] [--threads 2] [--profile]

For the analysis and the synthesis of the weights' bundle (built if needed): import time of each runtime (fresh
process), graph load/compile time, median run time on a Kodak-size input, and the largest difference from
torch. The synthesis also runs as exported before 2026-12-06 (``onnxruntime-dense``: one convolution to all
four phases of each transposed convolution, where the bundle has one per phase, models.layers.SubPixelConv) and
before 2026-12-08 (``onnxruntime-early-shuffle``: each layer's pixel shuffle where the layer is, where the bundle
leaves the last big one out, models.layers.late_shuffles).
Writes bench/results/runtimes.json. Run it on a quiet machine.
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

HERE = Path(__file__).resolve().parent


def import_time(module: str, repeat: int) -> float | None:
    code = f"import time; t=time.perf_counter(); import {module}; print(time.perf_counter()-t)"
    try:
        return round(statistics.median(float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                                             text=True).stdout) for _ in range(repeat)), 3)
    except subprocess.CalledProcessError:
        return None


def profile(label: str, path: Path, feeds: dict, threads: int, repeat: int) -> dict:
    """ONNX Runtime's profile of ``repeat`` runs of the graph at ``path`` (the first run, with its allocations,
    among them: a session profiles from its start): time by operator type, and the slowest nodes."""
    import collections

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.gettempdir()) / "runtimes-profile")
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = {i.name for i in s.get_inputs()}
    for _ in range(repeat):
        s.run(None, {k: v for k, v in feeds.items() if k in names})
    trace = Path(s.end_profiling())
    events = [e for e in json.loads(trace.read_text()) if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    trace.unlink()
    by_op, by_node = collections.Counter(), collections.Counter()
    for e in events:
        by_op[e["args"]["op_name"]] += e["dur"]
        by_node[e["name"].removesuffix("_kernel_time")] += e["dur"]
    total = sum(by_op.values())
    print(f"\n{label} synthesis, ONNX Runtime's profile ({repeat} runs, ms per run):")
    print(", ".join(f"{op} {d / repeat / 1e3:.1f} ({100 * d / total:.1f} %)" for op, d in by_op.most_common(8)))
    print("slowest nodes: " + ", ".join(f"{n} {d / repeat / 1e3:.1f}" for n, d in by_node.most_common(5)))
    return {"ms_per_run_by_op": {op: round(d / repeat / 1e3, 1) for op, d in by_op.most_common()},
            "share_by_op": {op: round(d / total, 3) for op, d in by_op.most_common()},
            "slowest_nodes_ms": {n: round(d / repeat / 1e3, 1) for n, d in by_node.most_common(5)}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--size", default="512x768")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true",
                    help="also ONNX Runtime's own profile of the synthesis graphs: each operator type's share of "
                         "the time over --repeat runs, and the five slowest nodes")
    a = ap.parse_args()
    h, w = map(int, a.size.split("x"))
    import torch

    from neuralcodec.pipeline import onnx_backend
    from neuralcodec.pipeline.spec import ModelSpec
    from neuralcodec.zoo import weights_io

    torch.set_num_threads(a.threads)
    wts = weights_io.load(a.weights)
    bundle = onnx_backend.build(wts)
    model = weights_io.build_model(wts)
    spec = json.loads((bundle / "spec.json").read_text())
    m = spec["levels"][-1]["channels"]
    rng = np.random.default_rng(0)
    inputs = {"analysis": {"x": rng.random((1, 3, h, w), np.float32)},
              "synthesis": {"hat0": np.round(rng.normal(0, 2, (1, m, h // 16, w // 16))).astype(np.float32)}}
    t = np.array([0.5], np.float32)
    res = {"weights": wts.path.name, "size": a.size, "threads": a.threads,
           "import_s": {k: import_time(k, 3) for k in ("torch", "onnxruntime", "openvino")}, "parts": {}}
    runners = {}
    scratch = tempfile.TemporaryDirectory()  # the graphs exported beside the bundle's, removed at the end
    import onnxruntime as ort

    try:
        import openvino as ov
    except ImportError:
        ov = None
    for part, feeds in inputs.items():
        band = ModelSpec.from_json((bundle / "spec.json").read_text()).band(float(t[0]))
        path = str(bundle / f"{onnx_backend.graph_name(part, band) if part == 'analysis' else part}.onnx")
        fn = model.analysis if part == "analysis" else model.synthesis
        x0 = next(iter(feeds.values()))
        runners = {"torch": (0.0, lambda fn=fn, x0=x0: fn(torch.from_numpy(x0), torch.from_numpy(t)).numpy())}
        t0 = time.perf_counter()
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = a.threads, 1
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        names = {i.name for i in s.get_inputs()}
        runners["onnxruntime"] = (time.perf_counter() - t0,
                                  lambda s=s, f={**feeds, "t": t}, n=names: s.run(None, {k: v for k, v in f.items() if k in n})[0])
        if part == "synthesis":  # the synthesis as exported before, beside the bundle's
            from neuralcodec.models import layers

            spec_ = ModelSpec.from_json((bundle / "spec.json").read_text())

            def dense(out):  # before 2026-12-06: one convolution to all four phases of each transposed convolution
                split, layers.SPLIT_CHANNELS = layers.SPLIT_CHANNELS, 1 << 30
                try:
                    onnx_backend._export(model, spec_, out, False)
                finally:
                    layers.SPLIT_CHANNELS = split

            for label, export in (("onnxruntime-dense", dense),  # before 2026-12-08: each shuffle where its layer is
                                  ("onnxruntime-early-shuffle", lambda out: onnx_backend._export(model, spec_, out, False,
                                                                                                  late=False))):
                out = Path(scratch.name) / label
                out.mkdir()
                export(out)
                s2 = ort.InferenceSession(str(out / "synthesis.onnx"), so, providers=["CPUExecutionProvider"])
                runners[label] = (0.0, lambda s=s2, f={**feeds, "t": t}, n=names:
                                  s.run(None, {k: v for k, v in f.items() if k in n})[0])
        if ov is not None:
            t0 = time.perf_counter()
            c = ov.Core().compile_model(ov.Core().read_model(path), "CPU", {
                "INFERENCE_NUM_THREADS": a.threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
            req = c.create_infer_request()
            vnames = [i.get_any_name() for i in c.inputs]
            f = {**feeds, "t": t}
            runners["openvino"] = (time.perf_counter() - t0,
                                   lambda req=req, c=c, f=f, n=vnames: req.infer({k: f[k] for k in n})[c.outputs[0]])
        times = {k: [] for k in runners}
        outs = {}
        with torch.inference_mode():
            for k, (_, run) in runners.items():
                outs[k] = run()  # warm-up
            for _ in range(a.repeat):
                for k, (_, run) in runners.items():
                    t0 = time.perf_counter()
                    run()
                    times[k].append(time.perf_counter() - t0)
        row = {k: {"load_s": round(runners[k][0], 3), "run_s": round(statistics.median(v), 3),
                   "max_abs_diff_vs_torch": float(np.abs(outs[k] - outs["torch"]).max())} for k, v in times.items()}
        for k in row:
            row[k]["speedup_vs_torch"] = round(row["torch"]["run_s"] / row[k]["run_s"], 2)
        res["parts"][part] = row
        print(part, json.dumps(row), flush=True)
    print("imports", res["import_s"])
    if a.profile:
        graphs = {"bundle": bundle / "synthesis.onnx", "early shuffle": Path(scratch.name) / "onnxruntime-early-shuffle" / "synthesis.onnx"}
        res["synthesis_profile"] = {label: profile(label, path, {**inputs["synthesis"], "t": t}, a.threads, a.repeat)
                                    for label, path in graphs.items()}
    out = HERE / "results" / "runtimes.json"
    out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
