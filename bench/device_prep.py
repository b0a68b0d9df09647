"""Get the checkout ready for a training run on a lent GPU machine (bench/device_train.sh), and back.

The device tool sends the working tree (tracked and untracked-not-ignored files, plus the ignored paths a call
carries), 64 MiB at most. The tracked tree is ~79 MiB, 47 MiB of it the superseded flagship weights kept to decode
old files (decoder-only archives), and the training corpus (~177 MB) stays behind. ``prepare``:

1. downloads the wheels the device image lacks (compressai, constriction, pytorch-msssim for Python 3.12) to
   ``.whl/``;
2. copies a seeded random subset of ``../shared/data/train`` of at most ``--mib`` MiB to ``.gpu/train/``;
3. moves the superseded flagship weights to ``.gpu/legacy/`` and unstages them (``git rm --cached``), so that
   they neither travel nor count.

Then call the device tool's ``run`` with ``carry=[".whl", ".gpu/train"]`` and the command
``bash bench/device_train.sh``. ``restore`` puts the weights back and re-stages them; run it before any commit
(``prepare`` refuses to run twice; ``restore`` is safe to repeat and also brings back from HEAD any
weights file missing from ``.gpu/legacy``).

    python bench/device_prep.py prepare [--mib 28] [--seed 1]
    python bench/device_prep.py restore
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GPU = ROOT / ".gpu"
WHEELS = ["compressai==1.2.8", "constriction==0.5.0", "pytorch-msssim==1.0.0"]
PLATFORMS = ["manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
LIMIT_MIB = 64


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def exclude(path: str) -> None:
    """Add ``path`` to .git/info/exclude (ignored here, never committed)."""
    f = Path(git("rev-parse", "--git-path", "info/exclude").strip())
    if not f.is_absolute():
        f = ROOT / f
    f.parent.mkdir(parents=True, exist_ok=True)
    lines = f.read_text().splitlines() if f.exists() else []
    if path not in lines:
        f.write_text("\n".join([*lines, path]) + "\n")


def legacy_weights() -> list[str]:
    """Tracked superseded flagship weights (the dated files)."""
    return [p for p in git("ls-files", "weights").splitlines() if Path(p).name.startswith("flagship-20")
            and p.endswith(".safetensors")]


def travelling_mib() -> float:
    """Size of what the device tool sends without carries: the index's files and untracked-not-ignored ones."""
    files = git("ls-files", "--cached", "--others", "--exclude-standard").splitlines()
    return sum((ROOT / f).stat().st_size for f in files if (ROOT / f).is_file()) / 2**20


def prepare(mib: float, seed: int, data: Path) -> None:
    if (GPU / "legacy").exists() and any((GPU / "legacy").iterdir()):
        sys.exit("already prepared (.gpu/legacy holds weights): run `restore` first")
    for p in ("/.whl/", "/.gpu/"):
        exclude(p)
    wheels = ROOT / ".whl"
    if not all(list(wheels.glob(w.split("==")[0].replace("-", "_") + "-*.whl")) for w in WHEELS):
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
               "--implementation", "cp", *sum((["--platform", p] for p in PLATFORMS), []), "-d", str(wheels), *WHEELS]
        subprocess.run(cmd, check=True)
    train = GPU / "train"
    shutil.rmtree(train, ignore_errors=True)
    train.mkdir(parents=True)
    images = sorted(p for p in data.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    random.Random(seed).shuffle(images)
    budget, n = mib * 2**20, 0
    for p in images:
        if p.stat().st_size > budget:
            continue
        shutil.copyfile(p, train / p.name)
        budget -= p.stat().st_size
        n += 1
    moved = legacy_weights()
    carried = sum(f.stat().st_size for d in (train, wheels) for f in d.iterdir()) / 2**20
    total = travelling_mib() - sum((ROOT / p).stat().st_size for p in moved) / 2**20 + carried
    print(f"{n} of {len(images)} training images in .gpu/train ({mib - budget / 2**20:.1f} MiB); "
          f"the device tool would send {total:.1f} MiB (limit {LIMIT_MIB})")
    if total > LIMIT_MIB:
        sys.exit("too much to send: lower --mib (nothing moved)")
    (GPU / "legacy").mkdir(exist_ok=True)
    for p in moved:  # one by one: an interruption leaves each file either in place or moved and unstaged
        shutil.move(str(ROOT / p), GPU / "legacy" / Path(p).name)
        git("rm", "--cached", "-q", p)
    print(f"{len(moved)} superseded weights moved to .gpu/legacy and unstaged")
    print('next: run(command="bash bench/device_train.sh", carry=[".whl", ".gpu/train"], timeout_s=600); '
          "then python bench/device_prep.py restore")


def restore() -> None:
    """Every weights file prepare took out, back in weights/ and in the index; one missing from .gpu/legacy
    (e.g. after `git clean -fdX`) comes back from HEAD."""
    legacy = GPU / "legacy"
    for p in sorted(legacy.glob("*.safetensors")) if legacy.exists() else []:
        shutil.move(str(p), ROOT / "weights" / p.name)
    gone = git("diff", "--cached", "--name-only", "--diff-filter=D", "--", "weights").splitlines()
    back = [p for p in gone if (ROOT / p).is_file()]
    if back:
        git("add", *back)
    lost = [p for p in gone if not (ROOT / p).is_file()]
    if lost:
        git("checkout", "HEAD", "--", *lost)
    print(f"{len(back)} weights files back in weights/ and staged, {len(lost)} restored from HEAD; "
          "`git status` should show no change to them")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=["prepare", "restore"])
    ap.add_argument("--mib", type=float, default=28.0, help="size of the training subset")
    ap.add_argument("--seed", type=int, default=1, help="which subset (vary it from one GPU session to the next)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "train")
    a = ap.parse_args()
    prepare(a.mib, a.seed, a.data) if a.action == "prepare" else restore()


if __name__ == "__main__":
    main()
