"""What a one-image CLI call pays besides the image (issue 23), each arm against the installed command in
alternating fresh processes: `python -m neuralcodec ARGS` as shipped, then

- teardown: the same call through ``cli.main.main()`` (no fast exit: the interpreter tears down every module and
  ONNX Runtime session, as every call did before session 28);
- source: the package's own modules compiled from source in the call (its __pycache__ folders moved aside: an
  editable install under PYTHONDONTWRITEBYTECODE, as the development machines had it; a pip install has them);
- huge pages: glibc's malloc asked for transparent huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1, which only
  the environment of a new process can set: the command would have to re-execute itself to use it).

Reports the median wall time of each arm, the median of the per-pair differences (arm minus installed: the
figure to quote, each pair ran back to back) and the peak RSS. Run it on a quiet machine.

    python bench/experiments/call_overheads.py [--pairs 9] [--image ../shared/data/kodak/kodim05.png]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from package_bytecode import compile_package  # noqa: E402

import neuralcodec  # noqa: E402
import neuralcodec.models  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--pairs", type=int, default=9)
ap.add_argument("--image", type=Path, default=HERE.parents[2] / "shared" / "data" / "kodak" / "kodim05.png")
a = ap.parse_args()
compile_package()
caches = [p for root in (neuralcodec, neuralcodec.models) for p in Path(root.__file__).parent.rglob("__pycache__")]


def hide(hidden: bool) -> None:
    for p in caches:
        src, dst = (p, p.with_name("__pycache__.off")) if hidden else (p.with_name("__pycache__.off"), p)
        if src.exists():
            src.rename(dst)


def call(cmd, env=None):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    if status:
        raise SystemExit(f"{cmd} failed")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


with tempfile.TemporaryDirectory() as tmp:
    nic, png = str(Path(tmp) / "a.nic"), str(Path(tmp) / "a.png")
    subprocess.run([sys.executable, "-m", "neuralcodec", "compress", str(a.image), "-o", nic, "-f", "--quiet"], check=True)
    for direction, args in (("decompress", ["decompress", nic, "-o", png, "-f", "--quiet"]),
                            ("compress", ["compress", str(a.image), "-o", nic, "-f", "--quiet"])):
        installed = [sys.executable, "-m", "neuralcodec", *args]
        arms = {
            "installed": (installed, None, False),
            "teardown": ([sys.executable, "-c", "import sys; from neuralcodec.cli.main import main; "
                          "sys.argv[0] = 'neuralcodec'; main()", *args], None, False),
            "source": (installed, {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, True),  # compiled, not written
            "huge pages": (installed, {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, False),
        }
        times = {k: [] for k in arms}
        peak = {k: 0.0 for k in arms}
        try:
            for _ in range(a.pairs):
                for k, (cmd, env, hidden) in arms.items():
                    hide(hidden)
                    t, rss = call(cmd, env)
                    times[k].append(t)
                    peak[k] = max(peak[k], rss)
        finally:
            hide(False)
        print(f"\n{direction} ({a.image.name}, {a.pairs} alternating rounds)\n"
              "| arm | median s | median of (arm - installed) | peak RSS |\n|---|---|---|---|")
        for k in arms:
            diff = statistics.median(x - y for x, y in zip(times[k], times["installed"]))
            print(f"| {k} | {statistics.median(times[k]):.3f} | {diff:+.3f} | {peak[k]:.0f} MiB |", flush=True)
