"""The synthesis graph on OpenVINO in float32 against ONNX Runtime (the decoder's runtime today), same process,
alternating: time per Kodak-size latent (768x512 image, y 320 x 32 x 48) on 1 and 2 threads, and the largest
output difference. A decoder must stay within +-1 pixel level of torch, so only float32 is a candidate
(bfloat16 moved pixels by up to 3 levels; bench/README.md).

    python bench/experiments/ov_synthesis.py [--repeat 7]
"""
import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
import openvino as ov

from neuralcodec.pipeline import onnx_backend
from neuralcodec.zoo import weights_io

ap = argparse.ArgumentParser()
ap.add_argument("--repeat", type=int, default=7)
a = ap.parse_args()
path = onnx_backend.build(weights_io.load(None)) / "synthesis.onnx"
rng = np.random.default_rng(0)
feeds = {"hat0": np.round(rng.laplace(0, 2, (1, 320, 32, 48))).astype(np.float32), "t": np.full((1,), 0.5, np.float32)}
for threads in (1, 2):
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.add_session_config_entry("session.force_spinning_stop", "1")
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    c = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
                                                   "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False})
    req = c.create_infer_request()
    times = {"ort": [], "openvino": []}
    outs = {}
    for i in range(a.repeat + 1):
        for name, run in (("ort", lambda: s.run(None, feeds)[0]), ("openvino", lambda: np.array(req.infer(feeds)[c.outputs[0]]))):
            t0 = time.perf_counter()
            outs[name] = run()
            if i:
                times[name].append(time.perf_counter() - t0)
    diff = float(np.abs(outs["ort"] - outs["openvino"]).max() * 255)
    print(f"threads {threads}: " + ", ".join(f"{k} {statistics.median(v):.3f} s" for k, v in times.items())
          + f"; largest difference {diff:.4f} levels")
