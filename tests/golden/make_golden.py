"""Write the golden files: tiny sources, their `.nic` files and the expected latent digests and PSNR.

Run once per format version / weights, deliberately: `python tests/golden/make_golden.py`. The test
`test_golden_files_still_decode` then guards them forever.
"""

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


def main():
    from neuralcodec import bitstream

    files = []
    for name, (h, w), seed, q in CASES:
        src = HERE / f"{name}.png"
        Image.fromarray(photo(h, w, seed)).save(src)
        data = neuralcodec.compress(Image.open(src), q)
        (HERE / f"{name}-q{q:g}.nic").write_bytes(data)
        out = np.asarray(neuralcodec.decompress(data))
        files.append({"file": f"{name}-q{q:g}.nic", "source": src.name, "quality": q,
                      "format_version": bitstream.VERSION, "file_sha256": hashlib.sha256(data).hexdigest(),
                      "latent_sha256": latent_digest(data), "psnr": round(psnr(out, np.asarray(Image.open(src))), 3)})
    (HERE / "golden.json").write_text(json.dumps({"files": files}, indent=1) + "\n")
    print(json.dumps(files, indent=1))


if __name__ == "__main__":
    main()
