"""Kodak rate-distortion of shipped weights with real files, and BD-rates against the measured anchors.

    python bench/kodak_rd.py [--weights flagship] [--qualities 0,20,40,60,80,100] [-o weights/flagship-kodak.json]

bpp = 8 * file bytes / pixels of the real `.nic` file; PSNR on RGB at 8 bits; MS-SSIM on RGB (5 scales).
Writes the anchors' JSON schema; prints BD-rates (PSNR and MS-SSIM dB) against jpeg-turbo, WebP m6 and AVIF.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import neuralcodec
from neuralcodec.api import load_codec
from neuralcodec.rd import bd_rate, load_anchor, msssim_db

ROOT = Path(__file__).resolve().parent.parent
ANCHORS = ROOT.parent / "shared" / "data" / "anchors" / "kodak"
KODAK = ROOT.parent / "shared" / "data" / "kodak"
AGAINST = {"jpeg-turbo": "measured-jpeg-turbo.json", "webp-m6": "measured-webp-m6.json",
           "avif-444-s6": "measured-avif-444-s6.json", "compressai mbt2018-mean": "compressai-mbt2018-mean_mse_cpu.json"}


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    from pytorch_msssim import ms_ssim as f

    ta, tb = (torch.from_numpy(np.array(x)).permute(2, 0, 1)[None].float() for x in (a, b))
    return float(f(ta, tb, data_range=255))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--qualities", default="0,20,40,60,80,100")
    ap.add_argument("--images", type=int, default=24, help="first N Kodak images (24 for reported numbers)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--output", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    qualities = [float(q) for q in args.qualities.split(",")]
    files = sorted(KODAK.glob("kodim*.png"))[: args.images]
    codec = load_codec(args.weights)
    res = {k: [] for k in ("bpp", "psnr-rgb", "ms-ssim", "enc_s", "dec_s")}
    per_image = []
    for q in qualities:
        rows = []
        for f in files:
            img = np.asarray(Image.open(f).convert("RGB"))
            t0 = time.perf_counter()
            data = neuralcodec.compress(img, q, weights=args.weights)
            t1 = time.perf_counter()
            out = np.asarray(neuralcodec.decompress(data, weights=args.weights))
            t2 = time.perf_counter()
            mse = np.mean((out.astype(np.float64) - img) ** 2)
            rows.append({"image": f.name, "quality": q, "bpp": 8 * len(data) / (img.shape[0] * img.shape[1]),
                         "psnr-rgb": 10 * np.log10(255**2 / mse), "ms-ssim": ms_ssim(out, img),
                         "enc_s": t1 - t0, "dec_s": t2 - t1})
        per_image += rows
        for k in ("bpp", "psnr-rgb", "ms-ssim"):
            res[k].append(float(np.mean([r[k] for r in rows])))
        for k in ("enc_s", "dec_s"):
            res[k].append(statistics.median(r[k] for r in rows))
        print(f"q={q:5.1f}  bpp {res['bpp'][-1]:.4f}  PSNR {res['psnr-rgb'][-1]:.3f}  MS-SSIM "
              f"{res['ms-ssim'][-1]:.5f}  enc {res['enc_s'][-1]:.2f}s  dec {res['dec_s'][-1]:.2f}s", flush=True)
    bd = {}
    for name, fname in AGAINST.items():
        a = load_anchor(ANCHORS / fname)
        bd[name] = {"psnr": round(bd_rate(a["bpp"], a["psnr-rgb"], res["bpp"], res["psnr-rgb"]), 2)}
        a_msssim = a.get("ms-ssim", a.get("ms-ssim-rgb"))
        if a_msssim:
            bd[name]["ms-ssim"] = round(bd_rate(a["bpp"], msssim_db(a_msssim), res["bpp"],
                                                msssim_db(res["ms-ssim"])), 2)
        print(f"BD-rate vs {name:24s} " + "  ".join(f"{k} {v:+7.2f} %" for k, v in bd[name].items()))
    report = {"name": "neuralcodec " + codec.weights.path.stem, "weights_digest": codec.weights.digest.hex(),
              "description": "neuralcodec real .nic files; bench/kodak_rd.py", "qualities": qualities,
              "images": [f.name for f in files], "threads": args.threads, "results": res, "bd_rate": bd,
              "per_image": per_image}
    if args.output:
        args.output.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
