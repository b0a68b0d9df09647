"""An image sheet of crops at about 0.2 bpp (issue 7): PSNR undersells the GAN variants, so look at them.

For one Kodak image, each model's operating point nearest the target rate (bench/seeds.py's weights in
runs/seeds/, the shipped flagship at the quality that lands nearest, lighthp's perceptual decoder on the same
file, and libjpeg-turbo through Pillow) is decoded, and the same crop of each is tiled into one labelled PNG.

    python bench/sheet.py                     # docs/seeds-sheet.png
    python bench/sheet.py --image kodim15.png --bpp 0.25 --crop 200,180,256
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import neuralcodec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KODAK = ROOT.parent / "shared" / "data" / "kodak"
RUNS = ROOT / "runs" / "seeds"


def bpp(data: bytes, img: np.ndarray) -> float:
    return 8 * len(data) / (img.shape[0] * img.shape[1])


def nearest_quality(img: np.ndarray, target: float, code) -> tuple[bytes, float]:
    """Bisect a monotonic quality 0..100 for the file nearest ``target`` bpp; returns (data, quality)."""
    lo, hi, best = 0.0, 100.0, None
    for _ in range(8):
        q = (lo + hi) / 2
        data = code(q)
        if best is None or abs(bpp(data, img) - target) < abs(bpp(best[0], img) - target):
            best = (data, q)
        lo, hi = (q, hi) if bpp(data, img) < target else (lo, q)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="kodim23.png")
    ap.add_argument("--bpp", type=float, default=0.2)
    ap.add_argument("--crop", default="250,120,256", help="x,y,size of the crop")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "seeds-sheet.png")
    a = ap.parse_args()
    img = np.asarray(Image.open(KODAK / a.image).convert("RGB"))
    x, y, s = (int(v) for v in a.crop.split(","))
    tiles = [("original", img)]

    def jpeg(q):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=max(1, int(q)))
        return buf.getvalue()
    data, _ = nearest_quality(img, a.bpp, jpeg)
    tiles.append((f"JPEG {bpp(data, img):.3f} bpp", np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))))
    data, q = nearest_quality(img, a.bpp, lambda q: neuralcodec.compress(img, q))
    tiles.append((f"flagship {bpp(data, img):.3f} bpp", np.asarray(neuralcodec.decompress(data))))
    for arch in ("resgdn", "lighthp", "dcuvae", "hvae", "betavae", "vqvae"):
        files = sorted(p for p in RUNS.glob(f"{arch}-*.safetensors") if "perceptual" not in p.name)
        if not files:
            continue
        coded = [(neuralcodec.compress(img, 0, weights=str(w)), w) for w in files]
        data, w = min(coded, key=lambda c: abs(bpp(c[0], img) - a.bpp))
        tiles.append((f"{arch} {bpp(data, img):.3f} bpp", np.asarray(neuralcodec.decompress(data, weights=str(w)))))
        tuned, base = RUNS / f"{arch}-perceptual.safetensors", RUNS / f"{arch}-l0.013.safetensors"
        if tuned.exists() and base.exists():  # the perceptual decoder decodes its base's files only
            data = next(c for c, f in coded if f == base)
            tiles.append((f"{arch} perceptual {bpp(data, img):.3f} bpp",
                          np.asarray(neuralcodec.decompress(data, weights=str(tuned)))))
    cols = 4
    rows = -(-len(tiles) // cols)
    sheet = Image.new("RGB", (cols * (s + 8), rows * (s + 28)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, t) in enumerate(tiles):
        cx, cy = (i % cols) * (s + 8), (i // cols) * (s + 28)
        sheet.paste(Image.fromarray(t[y:y + s, x:x + s]), (cx, cy + 20))
        draw.text((cx + 2, cy + 4), label, fill="black")
    a.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(a.output)
    print(f"wrote {a.output} ({len(tiles)} crops)")


if __name__ == "__main__":
    main()
