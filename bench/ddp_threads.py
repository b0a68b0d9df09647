"""Two single-thread training ranks (torchrun, gloo) against one two-thread process on this machine's two cores.

Same recipe (the flagship v2 model, M = 320, global batch 8 of 128 px crops), same number of steps; the wall
time per step comes from each run's own log (`time` between log lines, after the first, which holds start-up).
Training images: a subset of the corpus (``--images``), so that start-up (each rank decodes it) stays short.
Run it on a quiet machine (pause a background run with SIGSTOP).

    python bench/ddp_threads.py [--steps 60] [--images 120] [-o bench/results/ddp_threads.json]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd, run_dir: Path, env) -> dict:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    lines = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    times = [r["time"] for r in lines]
    every = lines[1]["step"] - lines[0]["step"]
    per_step = [(b - a) / every for a, b in zip(times[1:], times[2:])]  # the first interval holds start-up
    return {"wall_s": round(wall, 1), "s_per_step_median": round(statistics.median(per_step), 3),
            "s_per_step": [round(x, 3) for x in per_step]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--images", type=int, default=120)
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/train"))
    ap.add_argument("-o", "--output", default=None)
    a = ap.parse_args()
    recipe = json.loads((ROOT / "codec/train/recipes/flagship-v2.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="ddp-bench-"))
    try:
        data = work / "data"
        data.mkdir()
        for p in sorted(Path(a.data).iterdir())[: a.images]:
            os.symlink(p.resolve(), data / p.name)
        recipe.update(data=str(data), steps=a.steps, log_every=10, threads=2, checkpoint_minutes=1e9,
                      wake_from=0, wake_steps=0, wake_lr=0.0, warmup=10, ema_decay=0.999)
        (work / "recipe.json").write_text(json.dumps(recipe))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        exe = [sys.executable, "-m"]
        results = {}
        arms = {
            "1 process x 2 threads": exe + ["neuralcodec", "train"],
            "2 ranks x 1 thread (torchrun, gloo)": exe + ["torch.distributed.run", "--standalone", "--nproc-per-node",
                                                        "2", "-m", "neuralcodec", "train"],
        }
        for name, cmd in arms.items():
            run_dir = work / name.split()[0]
            results[name] = run(cmd + ["--recipe", str(work / "recipe.json"), "--run-dir", str(run_dir),
                                       "--init-weights", "flagship"],
                                run_dir, env)
            print(name, results[name], flush=True)
        one, two = (results[k]["s_per_step_median"] for k in arms)
        results["ratio (2 ranks / 1 process), per step"] = round(two / one, 3)
        results["setup"] = {"steps": a.steps, "images": a.images, "batch": recipe["batch"], "crop": recipe["crop"],
                            "model": recipe["model"], "date": time.strftime("%Y-%m-%d")}
        print(json.dumps(results, indent=1))
        if a.output:
            Path(a.output).write_text(json.dumps(results, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
