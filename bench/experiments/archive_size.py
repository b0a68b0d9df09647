"""How much smaller could the decoder-only archives be stored? (weights/README.md, "Superseded flagship weights")

Every ship leaves the previous flagship in the package as a decoder-only archive (~9.9 MB of fp16 tensors),
because the files it made name it. This measures what general-purpose lossless packing would save on each
archive: lzma on the raw tensor bytes, and lzma on the XOR of each tensor's bits with the same tensor of the
next (newer) weights (consecutive flagships are one training session apart, so sign, exponent and the top
mantissa bits often agree). The second would make every archive depend on its successor.

    python bench/experiments/archive_size.py [-o bench/results/archive_size.json]
"""

from __future__ import annotations

import argparse
import json
import lzma
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "weights"


def chain() -> list[Path]:
    """The flagship weights, oldest first: the dated archives, then the shipped flagship."""
    archives = []
    for card in WEIGHTS.glob("flagship-*.json"):
        c = json.loads(card.read_text())
        if c.get("decoder_only"):
            archives.append((int(c.get("steps_total", c["steps"])), card.with_suffix(".safetensors")))
    return [p for _, p in sorted(archives)] + [WEIGHTS / "flagship.safetensors"]


def xor_bytes(old: dict, new: dict) -> bytes:
    parts = []
    for name in sorted(old):
        a = old[name]
        b = new.get(name)
        if b is not None and b.shape == a.shape and a.dtype == b.dtype == np.float16:
            parts.append((a.view(np.uint16) ^ b.view(np.uint16)).tobytes())
        else:
            parts.append(a.tobytes())
    return b"".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "bench" / "results" / "archive_size.json")
    args = ap.parse_args()
    paths = chain()
    rows = []
    print("| archive | file bytes | lzma | XOR with successor + lzma |\n|---|---|---|---|")
    for old_path, new_path in zip(paths, paths[1:]):
        old, new = load_file(old_path), load_file(new_path)
        raw = b"".join(old[k].tobytes() for k in sorted(old))
        row = {"archive": old_path.name, "file_bytes": old_path.stat().st_size,
               "lzma_bytes": len(lzma.compress(raw)), "xor_lzma_bytes": len(lzma.compress(xor_bytes(old, new)))}
        rows.append(row)
        print(f"| {row['archive']} | {row['file_bytes']:,} | {row['lzma_bytes']:,} ({row['lzma_bytes'] / row['file_bytes']:.0%}) "
              f"| {row['xor_lzma_bytes']:,} ({row['xor_lzma_bytes'] / row['file_bytes']:.0%}) |")
    args.output.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
