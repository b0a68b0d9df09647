"""Where the flagship's quality tops out: the transforms, or the quantizer (issue 3's blocker at high rates).

For each Kodak image and rate t, three reconstructions of the same model:
- ``transform``: g_s(g_a(x)) with y not quantized at all: the best the transforms can do at that t;
- ``coded``: g_s(round(y - mu) + mu), what a file decodes to (float path, same latents up to rounding);
and the estimated bpp of the coded latents (Gaussian bin probabilities, the hyper-latent left out). If the
``transform`` PSNR hardly rises with t, more bits cannot buy quality: the transforms are the cap.
``grown_share``: the share of y's bits in channels from ``--grown-from`` on (default 192 for a wider model: the
channels grown by bench/experiments/grow.py; 0 while they sleep, so this says whether training woke them).

    python bench/transform_cap.py [--weights flagship] [--images 24] [--ts -0.3,0,0.5,0.8,1] [--out F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"


def psnr(x_hat, rgb: np.ndarray) -> float:
    """PSNR of a reconstruction (1,3,H,W float) against the 8-bit original, as a decoder writes it."""
    from neuralcodec.evaluation.evaluate import psnr as psnr_8bit

    out = x_hat[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    return psnr_8bit(out, rgb)


def measure(model, x, rgb: np.ndarray, t_value: float, grown_from: int = 0) -> dict:
    import torch

    t = torch.tensor([t_value])
    y = model.analysis(x, t)
    z = model.hyper_analysis(y, t)
    med = model.entropy_bottleneck.quantiles[:, 0, 1].view(1, -1, 1, 1)
    scales, mu = model.hyper_synthesis(torch.round(z - med) + med, t)
    q = torch.round(y - mu)
    normal = torch.distributions.Normal(0.0, 1.0)
    p = (normal.cdf((q + 0.5) / scales) - normal.cdf((q - 0.5) / scales)).clamp_min(1e-9)
    bits = -torch.log2(p)
    out = {"bpp_y": bits.sum().item() / (x.shape[2] * x.shape[3])}
    if grown_from:
        out["grown_share"] = bits[:, grown_from:].sum().item() / max(bits.sum().item(), 1e-9)
    return {**out, "transform": psnr(model.synthesis(y, t), rgb), "coded": psnr(model.synthesis(q + mu, t), rgb)}


def main() -> None:
    import torch
    from PIL import Image

    from neuralcodec.zoo import weights_io

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="flagship")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--ts", default=None, help="rates t (default: t_min, 0, 0.5, 0.8, 1)")
    ap.add_argument("--grown-from", type=int, default=None)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "transform_cap.json")
    args = ap.parse_args()
    w = weights_io.load(args.weights)
    model = weights_io.build_model(w)
    t_min = float(w.config.get("t_min", 0.0))
    ts = [float(v) for v in args.ts.split(",")] if args.ts else sorted({t_min, 0.0, 0.5, 0.8, 1.0})
    grown_from = args.grown_from if args.grown_from is not None else (192 if w.config.get("M", 192) > 192 else 0)
    names = sorted(KODAK.glob("kodim*.png"))[: args.images]
    rows = {t: [] for t in ts}
    with torch.inference_mode():
        for path in names:
            rgb = np.array(Image.open(path).convert("RGB"))
            x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
            for t in ts:
                rows[t].append(measure(model, x, rgb, t, grown_from))
            print(path.name, flush=True)
    table = [{"t": t, **{k: round(float(np.mean([r[k] for r in rows[t]])), 3) for k in rows[t][0]}} for t in ts]
    for r in table:
        print(r)
    args.out.write_text(json.dumps({"weights": w.digest.hex()[:16], "images": len(names), "rows": table}, indent=1)
                        + "\n")


if __name__ == "__main__":
    main()
