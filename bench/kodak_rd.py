"""Kodak rate-distortion of the shipped weights with real files, BD-rates against the measured anchors.

    python bench/kodak_rd.py [--weights flagship] [--qualities 0,20,40,60,80,100] [--effort 0] [-o bench/results/kodak]

Same as `neuralcodec eval ../shared/data/kodak --anchors <measured jpeg-turbo, webp-m6, avif-444-s6,
compressai mbt2018-mean>`: bpp = 8 * file bytes / pixels of real `.nic` files; PSNR on RGB at 8 bits; MS-SSIM on
RGB (5 scales); BD-rate pchip in log rate. Prints the curve and the BD-rate table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from neuralcodec.evaluation.evaluate import evaluate

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
ANCHORS = [SHARED / "anchors" / "kodak" / f for f in (
    "measured-jpeg-turbo.json", "measured-webp-m6.json", "measured-avif-444-s6.json",
    "compressai-mbt2018-mean_mse_cpu.json")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--qualities", default="0,20,40,60,80,100")
    ap.add_argument("--images", type=int, default=None, help="first N Kodak images (all 24 for reported numbers)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default="torch", help="torch (default: every card's curve since 2026-11 was "
                    "measured on it; files and PSNR agree with onnx to ~0.01 dB) or onnx/auto")
    ap.add_argument("--no-deblock", dest="deblock", action="store_false",
                    help="files without the deblocking flag (as every curve measured before 2026-12-06)")
    ap.add_argument("--effort", type=int, default=0, help="the encoder effort of every file (compress --effort; "
                    "0: the shipped curves; on a Kodak image effort 1 took ~12x effort 0's time, effort 2 ~22x); "
                    "results default to bench/results/kodak-effortN, never over the shipped curve")
    ap.add_argument("--card", action="store_true", help="also record the curve and BD-rates in the weights' card")
    ap.add_argument("-o", "--output", type=Path, default=None, help="default bench/results/kodak: the shipped "
                    "curve that compare_weights.py reads (pass -o runs/eval-X for candidate weights)")
    args = ap.parse_args()
    if args.output is None:
        args.output = ROOT / "bench" / "results" / ("kodak" + (f"-effort{args.effort}" if args.effort else ""))
    if args.card and args.effort:
        ap.error("--card records the effort-0 curve (the one the shipping rule compares); drop --effort")
    torch.set_num_threads(args.threads)
    s = evaluate(SHARED / "kodak", args.output, [float(q) for q in args.qualities.split(",")], [], ANCHORS,
                 args.weights, args.images, progress=False, effort=args.effort, backend=args.backend, deblock=args.deblock)
    r = s["curves"]["neuralcodec"]
    if args.card:
        from neuralcodec.zoo import catalog

        card_path = catalog.resolve(args.weights).with_suffix(".json")
        card = json.loads(card_path.read_text())
        card["kodak"] = {"measured_by": "python bench/kodak_rd.py --card", "threads": args.threads, "deblock": args.deblock,
                         "images": s["images"], "curve": r, "bd_rate_percent": s["bd_rate"]}
        card_path.write_text(json.dumps(card, indent=1) + "\n")
    for i, q in enumerate(r["quality"]):
        print(f"q={q:5.1f}  bpp {r['bpp'][i]:.4f}  PSNR {r['psnr-rgb'][i]:.3f}  MS-SSIM {r['ms-ssim'][i]:.5f}  "
              f"enc {r['enc_s'][i]:.2f}s  dec {r['dec_s'][i]:.2f}s")
    for name, row in s["bd_rate"].items():
        print(f"BD-rate vs {name:40s} " + "  ".join(f"{k} {v:+7.2f} %" for k, v in row.items()))


if __name__ == "__main__":
    main()
