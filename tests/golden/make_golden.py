"""Write the golden files: tiny sources, their `.nic` files and the expected latent digests and PSNR.

`python tests/golden/make_golden.py` writes the base cases with the default weights, once per format version,
deliberately: it never overwrites a `.nic` that exists (the weights that made it may only decode by now), so
delete one on purpose to remake it. The test `test_golden_files_still_decode` then guards them forever.

`python tests/golden/make_golden.py --weights NAME --quality Q` adds one file made with the shipped weights NAME
(from an existing source) and leaves the others as they are: one per shipped flagship, made while its encoder
still ships, guards its decoder-only archive (`neuralcodec retire`) after it is superseded.
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


def case(src: Path, name: str, q: float, weights: str | None = None) -> dict:
    """Write the file ``name`` made from ``src`` at quality ``q``; its manifest entry."""
    from neuralcodec import bitstream

    data = neuralcodec.compress(Image.open(src), q, weights=weights)
    (HERE / name).write_bytes(data)
    out = np.asarray(neuralcodec.decompress(data, weights=weights))
    made_with = {"weights": Path(weights).stem} if weights else {}
    return {"file": name, "source": src.name, "quality": q, **made_with,
            "format_version": bitstream.VERSION, "file_sha256": hashlib.sha256(data).hexdigest(),
            "latent_sha256": latent_digest(data), "psnr": round(psnr(out, np.asarray(Image.open(src))), 3)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="add one file made with these shipped weights; keep the others")
    p.add_argument("--quality", type=float, default=50.0)
    p.add_argument("--source", default="rgb-72x56.png")
    a = p.parse_args()
    manifest = HERE / "golden.json"
    files = json.loads(manifest.read_text())["files"] if manifest.exists() else []
    if a.weights:
        from neuralcodec import weights_io

        digest = weights_io.load(a.weights).digest.hex()[:8]  # names change when weights are superseded
        name = f"{Path(a.source).stem}-{digest}-q{a.quality:g}.nic"
        files = [f for f in files if f["file"] != name] + [case(HERE / a.source, name, a.quality, a.weights)]
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
