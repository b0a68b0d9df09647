"""Peak memory and wall time of `neuralcodec compress` / `decompress` on big images (issue 6).

    python bench/big_images.py [--sizes 2048 4096 8192] [--quality 50] [--kodak ../shared/data/kodak]

Each test image is a mosaic of Kodak photos at their native resolution (realistic content and bpp), S x S
pixels, saved as PNG. Every step is a fresh CLI process measured by `/usr/bin/time -v` (peak RSS, wall time),
so start-up and PNG reading/writing are included, as a user would see them. Writes
bench/results/big_images.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "neuralcodec"]


def mosaic(kodak: Path, size: int) -> Image.Image:
    tiles = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(kodak.glob("*.png"))]
    out = np.empty((size, size, 3), np.uint8)
    i = 0
    for r in range(0, size, 512):
        c = 0
        while c < size:
            t = tiles[i % len(tiles)]
            t = t if t.shape[0] == 512 else t.transpose(1, 0, 2)  # portrait Kodak images lie down
            h, w = min(512, size - r), min(t.shape[1], size - c)
            out[r:r + h, c:c + w] = t[:h, :w]
            c += w
            i += 1
    return Image.fromarray(out)


def timed(cmd: list[str]) -> dict:
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", p.stderr).group(1)
    secs = sum(float(x) * 60**i for i, x in enumerate(reversed(wall.split(":"))))
    return {"peak_rss_mib": round(rss_kb / 1024, 1), "wall_s": round(secs, 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    ap.add_argument("--quality", type=float, default=50)
    ap.add_argument("--kodak", type=Path, default=HERE.parent.parent / "shared" / "data" / "kodak")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "big_images.json")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for s in a.sizes:
            src, nic, back = tmp / f"{s}.png", tmp / f"{s}.nic", tmp / f"{s}-back.png"
            mosaic(a.kodak, s).save(src, compress_level=1)
            enc = timed([*CLI, "compress", str(src), "-o", str(nic), "-q", str(a.quality), "-f", "--quiet"])
            dec = timed([*CLI, "decompress", str(nic), "-o", str(back), "-f", "--quiet"])
            x = np.asarray(Image.open(src), np.float64)
            mse = np.mean((x - np.asarray(Image.open(back), np.float64)) ** 2)
            row = {"size": s, "megapixels": round(s * s / 1e6, 2), "bpp": round(8 * nic.stat().st_size / (s * s), 4),
                   "psnr": round(10 * np.log10(255**2 / mse), 2), "compress": enc, "decompress": dec}
            rows.append(row)
            print(json.dumps(row), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"quality": a.quality, "rows": rows}, indent=1) + "\n")
    print("\n| image | Mpx | bpp | PSNR | compress s | compress peak RSS | decompress s | decompress peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']}² | {r['megapixels']} | {r['bpp']} | {r['psnr']} | {r['compress']['wall_s']} | "
              f"{r['compress']['peak_rss_mib']:.0f} MiB | {r['decompress']['wall_s']} | "
              f"{r['decompress']['peak_rss_mib']:.0f} MiB |")


if __name__ == "__main__":
    main()
