"""The Ray engine against the local runner on this machine: one directory (Kodak by default) compressed and
decompressed by `-j 2` worker processes and by `--engine ray` on a local two-CPU Ray cluster, one CLI call each,
in one run; outputs compared byte for byte. Reports images per second per core, and the cluster's own start-up
(paid once per cluster, not per run) apart from each call's time.

Run it on a quiet machine (pause a background training run with SIGSTOP); the ONNX bundle of the weights should
already be built (any earlier compress does it).

    python bench/cluster_overhead.py [--images DIR] [--limit 24] [-o bench/results/cluster_overhead.json]
"""

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def same_tree(a: Path, b: Path) -> bool:
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and all(
        filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=str(ROOT.parent / "shared/data/kodak"))
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("-o", "--output", default=None)
    a = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    work = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    cli = [sys.executable, "-m", "neuralcodec"]
    try:
        src = work / "src"
        src.mkdir()
        for p in sorted(Path(a.images).glob("*.png"))[: a.limit]:
            os.symlink(p.resolve(), src / p.name)
        n = len(list(src.iterdir()))
        res = {"images": n, "date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count()}
        res["local -j 2 compress s"] = timed(cli + ["compress", str(src), "-o", str(work / "l"), "-j", "2", "--quiet"])
        res["local -j 2 decompress s"] = timed(cli + ["decompress", str(work / "l"), "-o", str(work / "lp"), "-j", "2",
                                                      "--quiet"])
        t0 = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
        res["ray cluster start s"] = time.perf_counter() - t0
        try:
            ray = ["--engine", "ray", "--address", cluster.address, "--quiet"]
            res["ray compress s"] = timed(cli + ["compress", str(src), "-o", str(work / "r")] + ray)
            res["ray decompress s"] = timed(cli + ["decompress", str(work / "r"), "-o", str(work / "rp")] + ray)
            res["ray compress again s (warm workers? no: a new driver)"] = timed(
                cli + ["compress", str(src), "-o", str(work / "r2")] + ray)
        finally:
            cluster.shutdown()
        res["outputs identical"] = same_tree(work / "l", work / "r") and same_tree(work / "lp", work / "rp")
        for k in ("compress", "decompress"):
            res[f"{k} ratio ray / local"] = res[f"ray {k} s"] / res[f"local -j 2 {k} s"]
            res[f"{k} images/s per core, local"] = n / res[f"local -j 2 {k} s"] / 2
            res[f"{k} images/s per core, ray"] = n / res[f"ray {k} s"] / 2
        res = {k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}
        print(json.dumps(res, indent=1))
        if a.output:
            Path(a.output).write_text(json.dumps(res, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
