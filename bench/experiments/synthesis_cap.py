"""Which transform caps the top quality: the analysis or the synthesis? (issue 19's last target)

    python bench/experiments/synthesis_cap.py [--weights flagship] [--images 6] [--crop 256] [--steps 300] [--t 1]

``bench/transform_cap.py`` measures g_s(g_a(x)) with y unquantized: the pair's ceiling. Here y starts at g_a(x)
and is then optimized alone (Adam, no rate term, no quantization) to minimize the MSE of g_s(y) against x: the
synthesis' own ceiling at rate t. If it rises far above the pair's, the analysis is what stops the top (an
encoder-side matter: a wider or better-trained g_a, or encoder effort); if it barely rises, the synthesis is.
Centre crops of the first --images Kodak images; PSNR (8-bit, as a decoder writes it) after 0, 30, 100 and --steps
steps. One thread by default (training shares the cores). bench/results/synthesis_cap.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
KODAK = HERE.parents[2] / "shared" / "data" / "kodak"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="flagship")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--t", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=0.02, help="Adam's step, in units of y's standard deviation")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--out", default=str(HERE.parent / "results" / "synthesis_cap.json"))
    args = ap.parse_args()
    import torch
    from PIL import Image

    from neuralcodec.zoo import weights_io

    sys.path.insert(0, str(HERE.parent))
    from transform_cap import psnr  # a reconstruction's PSNR as a decoder writes it (8-bit)

    torch.set_num_threads(args.threads)
    model = weights_io.build_model(weights_io.load(args.weights)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    t = torch.tensor([args.t])
    marks = sorted(k for k in {0, 30, 100, args.steps} if k <= args.steps)
    rows = []
    for path in sorted(KODAK.glob("*.png"))[:args.images]:
        im = Image.open(path).convert("RGB")
        w, h = im.size
        c = args.crop
        rgb = np.asarray(im.crop(((w - c) // 2, (h - c) // 2, (w + c) // 2, (h + c) // 2)))
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            y0 = model.analysis(x, t)
        y = y0.clone().requires_grad_(True)
        opt = torch.optim.Adam([y], lr=args.lr * float(y0.std()))
        got = {}
        for step in range(args.steps + 1):
            x_hat = model.synthesis(y, t)
            if step in marks:
                got[step] = psnr(x_hat.detach(), rgb)
            if step == args.steps:
                break
            opt.zero_grad()
            torch.mean((x_hat - x) ** 2).backward()
            opt.step()
        rows.append({"image": path.name, **{str(k): v for k, v in got.items()}})
        print(path.name, "  ".join(f"step {k}: {v:.2f} dB" for k, v in got.items()), flush=True)
    mean = {str(k): float(np.mean([r[str(k)] for r in rows])) for k in marks}
    print("mean", "  ".join(f"step {k}: {v:.2f} dB" for k, v in mean.items()))
    Path(args.out).write_text(json.dumps({"weights": args.weights, "t": args.t, "crop": args.crop, "lr": args.lr,
                                          "images": rows, "mean": mean}, indent=1))


if __name__ == "__main__":
    main()
