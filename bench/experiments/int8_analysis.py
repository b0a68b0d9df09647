"""Would an 8-bit analysis pay on a CPU without AMX? The flagship's analysis on OpenVINO with its 5x5 convolutions
in int8 (VNNI), against the bfloat16 analysis the encoder runs today.

    python bench/experiments/int8_analysis.py [--calib 8] [--images 4] [--threads 1] [--repeats 5] [--equalize]
        [--skip 0,3] [--bd 0,30,60,100]

OpenVINO runs a convolution in int8 where FakeQuantize nodes sit on its input and its weights (its low-precision
transformations). This script inserts them into the bundle's analysis graph by hand: weights per output channel,
symmetric, 255 levels; activations per tensor, 256 levels, over the range seen on ``--calib`` training photos
(256-px centre crops) at t = 0, 0.5 and 1 (pixels 0..255 are exact in 8 bits); ``--equalize`` first scales each
input channel to the same range (the inverse folded into the weights); ``--skip`` leaves those convolutions (0-3)
in bfloat16. GDN and the modulation stay in bfloat16. For each of ``--images`` Kodak images: the median analysis
time of float32, bf16 and int8 on ``--threads`` threads, and the share of y's rounded values (after the rate gain,
the encoder's grid) that differ from the float32 analysis, at t = 0, 0.5 and 1. ``--bd``: the same images coded
as real files at those qualities with the bf16 and the int8 analysis (swapped into the codec compress uses), and
the BD-rate between them. Needs OpenVINO.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[2] / "shared" / "data"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", type=int, default=8)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--percentile", type=float, default=100.0, help="of |activation| for the range")
    ap.add_argument("--equalize", action="store_true", help="scale each input channel of a convolution to the same "
                    "range (the inverse folded into its weights), so one per-tensor scale fits every channel")
    ap.add_argument("--skip", default="", help="convolutions (0-3) left in bfloat16, e.g. 0,3")
    ap.add_argument("--bd", default="", help="also code the --images at these qualities (e.g. 0,30,60,100) with "
                    "each analysis as real files and print the BD-rate of int8 against bf16")
    ap.add_argument("--weights", default=None)
    args = ap.parse_args()
    os.environ["NEURALCODEC_THREADS"] = str(args.threads)
    import openvino as ov
    from openvino import opset13 as ops

    from neuralcodec.pipeline import onnx_backend
    from neuralcodec.zoo import weights_io

    w = weights_io.load(args.weights or "flagship")
    _, transforms = onnx_backend.load(w)
    onnx_path = transforms.directory / "analysis.onnx"
    core = ov.Core()

    def convs(model):
        return [op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"
                and tuple(op.input(1).get_partial_shape().to_shape())[2:] == (5, 5)]

    # calibration: the inputs of the four 5x5 convolutions, float32
    probe = core.read_model(str(onnx_path))
    taps = [c.input(0).get_source_output() for c in convs(probe)]
    probe.add_outputs(taps)
    fp32 = core.compile_model(probe, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": args.threads})
    calib = sorted((DATA / "train").glob("*"))[:: max(1, 1300 // args.calib)][:args.calib]
    peaks = [[] for _ in taps]
    for p in calib:
        img = Image.open(p).convert("RGB")
        s = min(img.size)
        if s >= 256:  # the centre 256 x 256
            left, top = (img.width - 256) // 2, (img.height - 256) // 2
            img = img.crop((left, top, left + 256, top + 256))
        x = np.asarray(img, np.float32).transpose(2, 0, 1)[None] / 255
        for t in (0.0, 0.5, 1.0):
            out = fp32.create_infer_request().infer({"x": x, "t": np.array([t], np.float32)})
            for i, tap in enumerate(taps):
                a = np.abs(out[fp32.outputs[1 + i]])[0]
                a = a.reshape(len(a), -1)
                peaks[i].append(np.percentile(a, args.percentile, axis=1))
    chan = [np.max(pk, axis=0).astype(np.float32) for pk in peaks]  # per input channel, over images and t
    chan[0] = np.ones_like(chan[0])
    if not args.equalize:
        chan = [np.full_like(c, c.max()) for c in chan]
    skip = {int(v) for v in args.skip.split(",") if v}
    print("activation ranges per channel (min / median / max):",
          [(round(float(c.min()), 3), round(float(np.median(c)), 3), round(float(c.max()), 3)) for c in chan])

    def quantized():
        model = core.read_model(str(onnx_path))
        c = lambda v: ops.constant(np.asarray(v, np.float32))  # noqa: E731
        for i, conv in enumerate(convs(model)):
            if i in skip:
                continue
            src = conv.input(0).get_source_output()
            wsrc = conv.input(1).get_source_output()
            wv = wsrc.get_node().get_data() if wsrc.get_node().get_type_name() == "Constant" else None
            if wv is None:
                raise SystemExit(f"conv {i}: weights are not a constant ({wsrc.get_node().get_type_name()})")
            s_in = chan[i]
            if i == 0:  # pixels / 255: 256 levels over [0, 1] are the 8-bit values themselves
                lo, hi = 0.0, 1.0
            else:
                src = ops.multiply(src, c((1 / s_in).reshape(1, -1, 1, 1))).output(0)  # every channel to [-1, 1]
                wv = wv * s_in.reshape(1, -1, 1, 1)
                lo, hi = -1.0, 127 / 128
            fq = ops.fake_quantize(src, c(lo), c(hi), c(lo), c(hi), 256)
            conv.input(0).replace_source_output(fq.output(0))
            m = np.abs(wv).reshape(len(wv), -1).max(1).reshape(-1, 1, 1, 1).astype(np.float32)
            wfq = ops.fake_quantize(c(wv), c(-m), c(m), c(-m), c(m), 255)
            conv.input(1).replace_source_output(wfq.output(0))
        return model

    cfg = {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY",
           "ENABLE_CPU_PINNING": False}
    from openvino.preprocess import PrePostProcessor

    def scaled(model):  # as the encoder compiles it: pixels 0..255 in (onnx_backend.OrtTransforms._compile_bf16)
        ppp = PrePostProcessor(model)
        ppp.input("x").preprocess().scale(255.0)
        return core.compile_model(ppp.build(), "CPU", cfg)

    # the float32 reference reads pixels / 255 (ONNX Runtime's path); bf16 and int8 read 0..255, as the encoder feeds
    compiled = {"fp32": core.compile_model(core.read_model(str(onnx_path)), "CPU",
                                           {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": args.threads}),
                "bf16": scaled(core.read_model(str(onnx_path))),
                "int8": scaled(quantized())}
    ops_run = compiled["int8"].get_runtime_model().get_ordered_ops()
    ran = [op.get_rt_info()["runtimePrecision"].astype(str) for op in ops_run
           if op.get_rt_info()["layerType"].astype(str) == "Convolution"]
    print("the int8 graph's convolutions run in:", ran)
    times = {k: [] for k in compiled}
    moved = {k: {t: [] for t in (0.0, 0.5, 1.0)} for k in ("bf16", "int8")}
    for p in sorted((DATA / "kodak").glob("*.png"))[:args.images]:
        pixels = np.asarray(Image.open(p).convert("RGB"), np.float32).transpose(2, 0, 1)[None]
        ys = {}
        for name, cm in compiled.items():
            x = pixels / 255 if name == "fp32" else pixels
            req = cm.create_infer_request()
            for t in (0.0, 0.5, 1.0):
                ys[name, t] = np.array(req.infer({"x": x, "t": np.array([t], np.float32)})[cm.outputs[0]])
            ts = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                req.infer({"x": x, "t": np.array([0.5], np.float32)})
                ts.append(time.perf_counter() - t0)
            times[name].append(statistics.median(ts))
        for name in moved:
            for t in (0.0, 0.5, 1.0):
                moved[name][t].append(float(np.mean(np.round(ys[name, t]) != np.round(ys["fp32", t]))))
        print(p.name, {k: round(v[-1] * 1000) for k, v in times.items()}, "ms")
    print("median analysis ms:", {k: round(statistics.median(v) * 1000, 1) for k, v in times.items()})
    for name in moved:
        shares = {t: f"{100 * statistics.mean(v):.3f} %" for t, v in moved[name].items()}
        print(f"{name}: y values moved vs float32", shares)
    if args.bd:
        from neuralcodec.api import _codec_for
        from neuralcodec.evaluation.evaluate import _neuralcodec_coder, curve
        from neuralcodec.evaluation.rd import bd_rate
        from neuralcodec.settings import EncodeSettings

        settings = EncodeSettings(weights=args.weights, backend="onnx", precision="bf16")
        codec = _codec_for(settings)
        qualities = [float(q) for q in args.bd.split(",")]
        curves = {}
        for name in ("bf16", "int8"):
            codec.transforms._openvino = compiled[name]
            codec.transforms._requests.entry = None
            assert _codec_for(settings) is codec  # the codec compress(precision="bf16") uses: the swap takes effect
            coders = [(q, _neuralcodec_coder(q, args.weights, backend="onnx", precision="bf16")) for q in qualities]
            r = curve(name, coders, sorted((DATA / "kodak").glob("*.png"))[:args.images], with_msssim=False)["results"]
            bpp, psnr = r["bpp"], r["psnr-rgb"]
            curves[name] = (bpp, psnr)
            print(f"{name}: " + ", ".join(f"q{q:g} {b:.4f} bpp {d:.3f} dB" for q, b, d in zip(qualities, bpp, psnr)))
        print(f"BD-rate int8 vs bf16 (PSNR): {bd_rate(*curves['bf16'], *curves['int8']):+.3f} %")


if __name__ == "__main__":
    main()
