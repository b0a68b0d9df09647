"""Write the golden files: tiny sources, their `.nic` files and the expected latent digests and PSNR.

`python tests/golden/make_golden.py` writes the base cases with the default weights, once per format version,
deliberately: it never overwrites a `.nic` that exists (the weights that made it may only decode by now), so
delete one on purpose to remake it. The test `test_golden_files_still_decode` then guards them forever.

`python tests/golden/make_golden.py --weights NAME --quality Q` adds one file made with the shipped weights NAME
(from an existing source) and leaves the others as they are: one per shipped flagship, made while its encoder
still ships, guards its decoder-only archive (`neuralcodec retire`) after it is superseded.
`--smooth` (with `--size`) makes (once) and uses a smooth source instead (a colour gradient with mild noise,
where the ramp filter of format version 6 acts); `--mode RGBA|LA|L|P` makes (once) and uses a source of that mode from the RGB source (alpha, grayscale, palette
files); `--tile PX` writes a multi-tile file (with a source bigger than the tile: `--size 300x140`).
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import neuralcodec  # noqa: E402
from conftest import photo, psnr  # noqa: E402
from test_determinism import latent_digest  # noqa: E402

CASES = [("rgb-72x56", (56, 72), 0, 10.0), ("rgb-130x67", (67, 130), 1, 55.0), ("rgb-64x64", (64, 64), 2, 95.0)]


def case(src: Path, name: str, q: float, weights: str | None = None, tile: int | None = None) -> dict:
    """Write the file ``name`` made from ``src`` at quality ``q``; its manifest entry."""

    # the float32 analysis, as the byte-for-byte test re-encodes (a bfloat16 one moves a few values of y)
    data = neuralcodec.compress(Image.open(src), q, weights=weights, tile=tile, precision="fp32")
    (HERE / name).write_bytes(data)
    out = neuralcodec.decompress(data, weights=weights)
    made_with = {"weights": Path(weights).stem} if weights else {}
    made_with.update({"tile": tile} if tile else {})
    return {"file": name, "source": src.name, "quality": q, **made_with,
            "format_version": neuralcodec.info(data)["format_version"], "file_sha256": hashlib.sha256(data).hexdigest(),
            "latent_sha256": latent_digest(data), "psnr": round(psnr(np.asarray(out.convert("RGB")), np.asarray(Image.open(src).convert("RGB"))), 3)}


def smooth(h: int, w: int) -> np.ndarray:
    """A colour gradient with Gaussian noise of 2 grey levels (as bench/smooth_grid.py's), seeded."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([70 + 0.35 * xx, 90 + 0.3 * yy, 180 - 0.2 * (xx + yy)], -1)
    return np.clip(base + np.random.default_rng(11).normal(0, 2, base.shape), 0, 255).round().astype(np.uint8)


def make_mode_source(rgb_src: Path, mode: str) -> Path:
    """A source of ``mode`` made from an RGB one (alpha: a smooth ramp with a hole; P: 32 colours), once."""
    dst = rgb_src.with_name(f"{mode.lower()}-{rgb_src.stem.split('-', 1)[1]}.png")
    if dst.exists():
        return dst
    img = Image.open(rgb_src).convert("RGB")
    w, h = img.size
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = np.clip(255 * xx / max(1, w - 1), 0, 255).astype(np.uint8)
    alpha[(yy - h // 2) ** 2 + (xx - w // 2) ** 2 < (min(h, w) // 4) ** 2] = 0
    if mode == "L":
        out = img.convert("L")
    elif mode == "P":
        out = img.quantize(32)
    else:
        out = img.convert(mode[:-1] if mode != "RGBA" else "RGB")
        out.putalpha(Image.fromarray(alpha))
    out.save(dst)
    return dst


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="add one file made with these shipped weights; keep the others")
    p.add_argument("--quality", type=float, default=50.0)
    p.add_argument("--source", default="rgb-72x56.png")
    p.add_argument("--mode", choices=["RGB", "RGBA", "LA", "L", "P"], default="RGB")
    p.add_argument("--tile", type=int, default=None, help="tile side in pixels (a multi-tile file)")
    p.add_argument("--size", default=None, help="WxH: make (once) an RGB source of this size instead")
    p.add_argument("--smooth", action="store_true", help="with --size: a smooth source (a gradient, mild noise)")
    a = p.parse_args()
    if a.smooth and not a.size:
        p.error("--smooth needs --size")
    if a.size:
        w, h = map(int, a.size.split("x"))
        a.source = f"{'smooth' if a.smooth else 'rgb'}-{w}x{h}.png"
        if not (HERE / a.source).exists():
            Image.fromarray(smooth(h, w) if a.smooth else photo(h, w, 7)).save(HERE / a.source)
    if a.mode != "RGB":
        a.source = make_mode_source(HERE / a.source, a.mode).name
    manifest = HERE / "golden.json"
    files = json.loads(manifest.read_text())["files"] if manifest.exists() else []
    if a.weights:
        from neuralcodec.zoo import weights_io

        digest = weights_io.load(a.weights).digest.hex()[:8]  # names change when weights are superseded
        tile = f"-tile{a.tile}" if a.tile else ""
        name = f"{Path(a.source).stem}-{digest}-q{a.quality:g}{tile}.nic"
        if (HERE / name).exists():
            raise SystemExit(f"{name} exists: golden files are never remade (delete it on purpose to remake it)")
        files = [f for f in files if f["file"] != name] + [case(HERE / a.source, name, a.quality, a.weights, a.tile)]
    else:
        for name, (h, w), seed, q in CASES:
            if (HERE / f"{name}-q{q:g}.nic").exists():
                continue
            src = HERE / f"{name}.png"
            Image.fromarray(photo(h, w, seed)).save(src)
            files = [f for f in files if f["file"] != f"{name}-q{q:g}.nic"] + [case(src, f"{name}-q{q:g}.nic", q)]
    manifest.write_text(json.dumps({"files": files}, indent=1) + "\n")
    print(json.dumps(files[-1] if a.weights else files, indent=1))


if __name__ == "__main__":
    main()
