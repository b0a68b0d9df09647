"""Encode/decode speed on Kodak beside avifenc/avifdec and cjxl/djxl, in one run (issue 6).

    python bench/speed.py [--images 8] [--quality 50] [--kodak ../shared/data/kodak]

Every timing is the wall time of one CLI process per image (start-up, PNG reading and writing included),
as in ../shared/data/anchors/kodak/measured-timing-single-worker.md, median over the images. avifenc runs
like the AVIF anchor (-j 1 -s 6 -y 444 --min q --max q) at the q whose Kodak bpp is nearest ours; cjxl at -e 7
with the distance giving a similar bpp. neuralcodec also runs in-process with the model loaded (what a
directory run pays per image), and a directory with -j 1 / -j 2 / -j auto (the default) for throughput, beside avifenc over the same
directory two processes at a time (issue 23's directory target). Needs avifenc/avifdec and cjxl/djxl (Debian:
libavif-bin, libjxl-tools). Writes bench/results/speed.json; prints a Markdown table.
Run it on a quiet machine: it reports ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from package_bytecode import compile_package

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "neuralcodec"]
ANCHORS = HERE.parent.parent / "shared" / "data" / "anchors" / "kodak"


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def avifenc(q, src: Path, dst: Path) -> list[str]:
    """avifenc as the AVIF anchor ran it: one thread, speed 6, 4:4:4, quantizer q."""
    return ["avifenc", "-j", "1", "-s", "6", "-y", "444", "--min", str(q), "--max", str(q), str(src), str(dst)]


def anchor_q_near(anchor: str, bpp: float):
    """The setting (q or distance) of a measured Kodak anchor whose mean bpp is nearest ``bpp``."""
    a = json.loads((ANCHORS / anchor).read_text())
    qs = [p["q"] for p in next(iter(a["per_image"].values()))]
    return min(zip(a["results"]["bpp"], qs), key=lambda bq: abs(bq[0] - bpp))[1]


def in_process(images: list[Path], quality: float) -> tuple[list[float], list[float]]:
    import neuralcodec
    from neuralcodec.api import load_codec

    load_codec()
    enc, dec = [], []
    for p in images:
        t0 = time.perf_counter()
        data = neuralcodec.compress(p, quality)
        enc.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        neuralcodec.decompress(data)
        dec.append(time.perf_counter() - t0)
    return enc, dec


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8, help="how many Kodak images (evenly spaced)")
    ap.add_argument("--quality", type=float, default=50)
    ap.add_argument("--kodak", type=Path, default=HERE.parent.parent / "shared" / "data" / "kodak")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "speed.json")
    a = ap.parse_args()
    compile_package()  # as an installed package has it
    for tool in ("avifenc", "avifdec", "cjxl", "djxl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (Debian: apt install libavif-bin libjxl-tools)")
    allimgs = sorted(a.kodak.glob("kodim*.png"))
    step = max(1, len(allimgs) // a.images)
    images = allimgs[::step][: a.images]
    t = {k: [] for k in ("nc_enc", "nc_dec", "avif_enc", "avif_dec", "jxl_enc", "jxl_dec")}
    size = {"nc": 0, "avif": 0, "jxl": 0}
    pixels = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for p in images:  # neuralcodec first: its bpp picks the classic codecs' settings
            nic = tmp / (p.stem + ".nic")
            t["nc_enc"].append(wall([*CLI, "compress", str(p), "-o", str(nic), "-q", str(a.quality), "-f", "--quiet"]))
            t["nc_dec"].append(wall([*CLI, "decompress", str(nic), "-o", str(tmp / (p.stem + "-nc.png")), "-f",
                                     "--quiet"]))
            size["nc"] += nic.stat().st_size
            with Image.open(p) as im:
                pixels += im.width * im.height
        bpp = 8 * size["nc"] / pixels
        q, d = anchor_q_near("measured-avif-444-s6.json", bpp), anchor_q_near("measured-jxl-e7.json", bpp)
        for p in images:
            avif, jxl = tmp / (p.stem + ".avif"), tmp / (p.stem + ".jxl")
            t["avif_enc"].append(wall(avifenc(q, p, avif)))
            t["avif_dec"].append(wall(["avifdec", "-j", "1", "--png-compress", "1", str(avif),
                                       str(tmp / (p.stem + "-avif.png"))]))
            t["jxl_enc"].append(wall(["cjxl", str(p), str(jxl), "-e", "7", "-d", str(d), "--num_threads=1", "--quiet"]))
            t["jxl_dec"].append(wall(["djxl", str(jxl), str(tmp / (p.stem + "-jxl.png")), "--num_threads=1", "--quiet"]))
            size["avif"] += avif.stat().st_size
            size["jxl"] += jxl.stat().st_size
        enc_ip, dec_ip = in_process(images, a.quality)
        # directory throughput, one process per run
        src = tmp / "src"
        src.mkdir()
        for p in images:
            shutil.copy(p, src / p.name)
        throughput = {}
        for jobs in ("1", "2", "auto"):  # auto: the default
            n = wall([*CLI, "compress", str(src), "-o", str(tmp / f"out{jobs}"), "-q", str(a.quality), "-j",
                      jobs, "--quiet"])
            throughput[f"j{jobs}_images_per_s"] = round(len(images) / n, 3)
            throughput[f"j{jobs}_wall_s"] = round(n, 3)
        for jobs in ("1", "2", "auto"):  # and back (no target: avifdec is ~10x faster per image)
            n = wall([*CLI, "decompress", str(tmp / "out1"), "-o", str(tmp / f"back{jobs}"), "-j", jobs, "--quiet"])
            throughput[f"decompress_j{jobs}_wall_s"] = round(n, 3)
        # avifenc over the same directory, as a user would run it on 2 cores: one process per image, 2 at a time
        from concurrent.futures import ThreadPoolExecutor

        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda p: wall(avifenc(q, p, tmp / (p.stem + "-dir.avif"))), images))
        throughput["avifenc_2_at_a_time_wall_s"] = round(time.perf_counter() - t0, 3)
        for jobs in ("1", "2", "auto"):
            throughput[f"ratio_j{jobs}_to_avifenc"] = round(throughput[f"j{jobs}_wall_s"]
                                                           / throughput["avifenc_2_at_a_time_wall_s"], 2)
    med = {k: round(statistics.median(v), 3) for k, v in t.items()}
    res = {"images": [p.name for p in images], "quality": a.quality, "avif_q": q, "jxl_distance": d,
           "bpp": {k: round(8 * v / pixels, 4) for k, v in size.items()}, "median_s": med, "per_image_s": t,
           "in_process_median_s": {"enc": round(statistics.median(enc_ip), 3),
                                   "dec": round(statistics.median(dec_ip), 3)},
           "directory": throughput,
           "ratio_to_avif": {"enc": round(med["nc_enc"] / med["avif_enc"], 2),
                             "dec": round(med["nc_dec"] / med["avif_dec"], 2),
                             "enc_in_process": round(statistics.median(enc_ip) / med["avif_enc"], 2),
                             "dec_in_process": round(statistics.median(dec_ip) / med["avif_dec"], 2)}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "per_image_s"}, indent=1))
    print(f"\n| codec | bpp | encode s (median) | decode s (median) |\n|---|---|---|---|")
    print(f"| neuralcodec q{a.quality:g} (CLI process) | {res['bpp']['nc']} | {med['nc_enc']} | {med['nc_dec']} |")
    print(f"| neuralcodec (in process, model loaded) | {res['bpp']['nc']} | {res['in_process_median_s']['enc']} | "
          f"{res['in_process_median_s']['dec']} |")
    print(f"| avifenc -s 6 -y 444 q{q} / avifdec | {res['bpp']['avif']} | {med['avif_enc']} | {med['avif_dec']} |")
    print(f"| cjxl -e 7 -d {d} / djxl | {res['bpp']['jxl']} | {med['jxl_enc']} | {med['jxl_dec']} |")


if __name__ == "__main__":
    main()
