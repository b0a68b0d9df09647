"""Long mutation fuzz run of the `.nic` parser and the whole decoder; prints inputs tried, crashes and hangs.

    python bench/fuzz.py --parser 100000 --decoder 2000 [--seed 0]

A crash is any exception other than DecodeError/FormatError; a hang is one input taking over --hang-s seconds.
Mutations: random byte edits, bit flips, truncations, insertions; with or without CRCs recomputed (so the
mutation reaches the entropy decoder and the model). Failing inputs are saved under bench/results/fuzz/.
"""

from __future__ import annotations

import argparse
import time
import traceback
from pathlib import Path

import numpy as np

import neuralcodec
from neuralcodec.format import bitstream
from neuralcodec.api import DecodeError

OUT = Path(__file__).resolve().parent / "results" / "fuzz"


def seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for h, w, q in ((16, 16, 0), (40, 72, 60), (70, 33, 100)):
        img = np.clip(rng.normal(128, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        out.append(neuralcodec.compress(img, q))
    return out


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        op = rng.integers(4)
        if op == 0 and b:
            b[rng.integers(len(b))] = rng.integers(256)
        elif op == 1 and b:
            b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
        elif op == 2:
            del b[rng.integers(len(b) + 1):]
        else:
            pos = int(rng.integers(len(b) + 1))
            b[pos:pos] = rng.bytes(int(rng.integers(1, 9)))
    return bytes(b)


def recrc(data: bytes, rng) -> bytes:
    c = bitstream.unpack(data)
    tag = list(c.chunks)[rng.integers(len(c.chunks))]
    c.chunks[tag] = mutate(c.chunks[tag], rng)
    return bitstream.pack(c)


def run(n: int, target, make, rng, hang_s: float, label: str) -> dict:
    crashes = hangs = 0
    t0 = time.perf_counter()
    for i in range(n):
        data = make(rng)
        t = time.perf_counter()
        try:
            target(data)
        except (DecodeError, bitstream.FormatError):
            pass
        except Exception:  # noqa: BLE001 - a crash is what we count
            crashes += 1
            OUT.mkdir(parents=True, exist_ok=True)
            (OUT / f"{label}-crash-{i}.nic").write_bytes(data)
            traceback.print_exc()
        if time.perf_counter() - t > hang_s:
            hangs += 1
            OUT.mkdir(parents=True, exist_ok=True)
            (OUT / f"{label}-slow-{i}.nic").write_bytes(data)
    return {"target": label, "inputs": n, "crashes": crashes, "hangs": hangs,
            "seconds": round(time.perf_counter() - t0, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parser", type=int, default=100_000)
    ap.add_argument("--decoder", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hang-s", type=float, default=10.0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    corpus = seeds()

    def pick(rng):
        return corpus[rng.integers(len(corpus))]

    print(run(a.parser, bitstream.unpack, lambda r: mutate(pick(r), r), rng, a.hang_s, "parser"))
    half = a.decoder // 2
    print(run(half, neuralcodec.decompress, lambda r: mutate(pick(r), r), rng, a.hang_s, "decoder"))
    print(run(a.decoder - half, neuralcodec.decompress, lambda r: recrc(pick(r), r), rng, a.hang_s,
              "decoder-crc-fixed"))


if __name__ == "__main__":
    main()
