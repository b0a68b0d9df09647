"""Integer hyper-synthesis vs its float form on Kodak: BD-rate cost, and a +-1 ulp stress test.

    python bench/experiments/integer_hs.py [--weights flagship] [--images 24] [--qualities 0,20,40,60,80,100]

For every image and quality, y and z come from the same analysis; then the entropy parameters of y come
either from the integer network the format uses (codec.y_parameters) or from the float network it was
quantized from (model.hyper_synthesis + bucketize), and each variant is really range coded (payload bytes)
and decoded (PSNR). BD-rate (pchip, log rate) of integer vs float is the cost of exactness.

Stress: the float inputs of the scale computation (z_hat = symbol + median) are nudged by +-1 ulp at random;
the float path's table indexes change for some elements, the integer path's (input rounded to its 2^-16 grid)
for none. The same for every float weight of h_s nudged by +-1 ulp (the integer path has no float weights).
Also counted: float indexes that change with the thread count or the memory layout (channels_last
picks other conv kernels). Writes bench/results/integer_hs.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from neuralcodec.coding import entropy
from neuralcodec.coding.integer import ACT_BITS
from neuralcodec.api import load_codec
from neuralcodec.rate import gain_fixed, rate_of_quality
from neuralcodec.evaluation.rd import bd_rate

ROOT = Path(__file__).resolve().parents[2]
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def psnr(a, b):
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def float_parameters(codec, z_hat, t, bounds):
    scales, means = codec.model.hyper_synthesis(z_hat, t)
    return torch.bucketize(scales, bounds)[0].cpu().numpy(), means


def code(codec, y, z_sym, idx, means, rgb, t):
    z_idx = np.broadcast_to(np.arange(z_sym.shape[0])[:, None, None], z_sym.shape)
    y_sym = torch.round(y - means)
    nbytes = len(entropy.encode(z_sym, z_idx, codec.stages[0].tables)) + len(
        entropy.encode(y_sym[0].numpy().astype(np.int64), idx, codec.stages[1].tables))
    x_hat = codec.model.synthesis(y_sym + means, t)[0, :, : rgb.shape[0], : rgb.shape[1]]
    out = x_hat.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return nbytes, psnr(out, rgb)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--qualities", default="0,20,40,60,80,100")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "bench" / "results" / "integer_hs.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec = load_codec(args.weights, "cpu")
    bounds = torch.from_numpy(codec.weights.tensors["tables.scale_table"][:-1].astype(np.float32))
    qualities = [float(q) for q in args.qualities.split(",")]
    curves = {k: {"bytes": np.zeros(len(qualities)), "psnr": np.zeros(len(qualities))} for k in ("int", "float")}
    stress = {"elements": 0, "float_changed_by_ulp": 0, "int_changed_by_ulp": 0, "float_changed_by_threads": 0,
              "float_changed_by_layout": 0, "float_changed_by_weight_ulp": 0,
              "float_vs_int_index_differs": 0}
    rng = np.random.default_rng(0)
    # a second float h_s whose every weight is nudged by +-1 ulp: another library's rounding of the same net
    nudged_model = copy.deepcopy(codec.model)
    with torch.no_grad():
        for p in nudged_model.h_s.parameters():
            p.copy_(torch.from_numpy(np.nextafter(p.numpy(), np.where(rng.random(p.shape) < 0.5, -np.inf, np.inf))))
    nudged_codec = copy.copy(codec)
    nudged_codec.transforms = copy.copy(codec.transforms)
    nudged_codec.transforms.model = nudged_model
    files = sorted(KODAK.glob("*.png"))[: args.images]
    pixels = 0
    t0 = time.time()
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        pixels += rgb.shape[0] * rgb.shape[1]
        for qi, q in enumerate(qualities):
            rate = rate_of_quality(q)
            t = torch.tensor([codec.t(rate)])
            with torch.inference_mode():
                x = codec.transforms.padded(rgb)
                y = codec.model.analysis(x, t)
                z_stage, y_stage = codec.stages
                z_dec = z_stage.quantize(codec.model.hyper_analysis(y, t)[0].numpy(), None, rate, context=True)
                z_sym = z_dec.symbols
                z_hat = torch.from_numpy(z_sym.astype(np.float32) + z_stage.medians)[None]
                idx_i, mu_i = y_stage.parameters(z_dec, rate)
                mu_i = torch.from_numpy(mu_i)[None]
                idx_f, mu_f = float_parameters(codec, z_hat, t, bounds)
                for k, (idx, mu) in {"int": (idx_i, mu_i), "float": (idx_f, mu_f)}.items():
                    nbytes, p = code(codec, y, z_sym, idx, mu, rgb, t)
                    curves[k]["bytes"][qi] += nbytes
                    curves[k]["psnr"][qi] += p
                # +-1 ulp on the float input of the scale computation
                z_np = z_hat.numpy()
                nudged = np.nextafter(z_np, np.where(rng.random(z_np.shape) < 0.5, -np.inf, np.inf)).astype(np.float32)
                idx_fn, _ = float_parameters(codec, torch.from_numpy(nudged), t, bounds)
                a = np.round(nudged[0].astype(np.float64) * 2**ACT_BITS).astype(np.int64)
                out = y_stage.prior(a)
                g = gain_fixed(y_stage.rate_gain, rate, y_stage.t_min)
                idx_in = np.searchsorted(y_stage.thresholds, np.split(out, 2)[0] * g, side="left")
                other = 1 if args.threads > 1 else 2
                torch.set_num_threads(other)
                idx_f1, _ = float_parameters(codec, z_hat, t, bounds)
                torch.set_num_threads(args.threads)
                idx_fw, _ = float_parameters(nudged_codec, z_hat, t, bounds)
                idx_fl, _ = float_parameters(codec, z_hat.contiguous(memory_format=torch.channels_last), t, bounds)
            stress["elements"] += idx_i.size
            stress["float_changed_by_ulp"] += int((idx_fn != idx_f).sum())
            stress["int_changed_by_ulp"] += int((idx_in != idx_i).sum())
            stress["float_changed_by_threads"] += int((idx_f1 != idx_f).sum())
            stress["float_changed_by_layout"] += int((idx_fl != idx_f).sum())
            stress["float_changed_by_weight_ulp"] += int((idx_fw != idx_f).sum())
            stress["float_vs_int_index_differs"] += int((idx_f != idx_i).sum())
        print(f"{f.name} done ({time.time() - t0:.0f} s)", flush=True)
    res = {"images": len(files), "qualities": qualities, "stress": stress}
    for k, c in curves.items():
        res[k] = {"bpp": (8 * c["bytes"] / pixels).tolist(), "psnr-rgb": (c["psnr"] / len(files)).tolist()}
    res["bd_rate_int_vs_float_percent"] = bd_rate(res["float"]["bpp"], res["float"]["psnr-rgb"],
                                                  res["int"]["bpp"], res["int"]["psnr-rgb"])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(res, indent=1) + "\n")
    for k in ("float", "int"):
        print(k, " ".join(f"{b:.4f}/{p:.3f}" for b, p in zip(res[k]["bpp"], res[k]["psnr-rgb"])))
    print(f"BD-rate integer vs float: {res['bd_rate_int_vs_float_percent']:+.3f} %")
    print(json.dumps(stress))


if __name__ == "__main__":
    main()
