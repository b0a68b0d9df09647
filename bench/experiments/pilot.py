"""Training pilot (issue 3): step time of candidate model sizes and training settings on this CPU, and
optionally the Kodak RD each reaches after the same wall-clock budget.

    python bench/experiments/pilot.py                      # step times only: ~1 min per candidate
    python bench/experiments/pilot.py --minutes 20         # also train each from scratch for 20 min, then eval 4 Kodak images

Candidates: the flagship architecture at N/M = 96/128 and 128/192, 128 px vs 256 px crops (batch scaled to
the same pixels per step), 1 vs 2 threads, channels_last on/off. Run it with nothing else on the machine
(stop the background training first: `kill -STOP <pid>`, `kill -CONT <pid>` after). Writes
bench/results/pilot.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from neuralcodec.models import build
from neuralcodec.train.loop import Recipe, load_corpus, rd_loss, sample_batch

HERE = Path(__file__).resolve().parents[1]  # bench/
SHARED = HERE.parent.parent / "shared" / "data"

CANDIDATES = [
    {"name": "N128 M192 crop128 b8 2thr CL", "N": 128, "M": 192, "crop": 128, "batch": 8, "threads": 2, "cl": True},
    {"name": "N128 M192 crop128 b8 2thr", "N": 128, "M": 192, "crop": 128, "batch": 8, "threads": 2, "cl": False},
    {"name": "N128 M192 crop128 b8 1thr CL", "N": 128, "M": 192, "crop": 128, "batch": 8, "threads": 1, "cl": True},
    {"name": "N128 M192 crop256 b2 2thr CL", "N": 128, "M": 192, "crop": 256, "batch": 2, "threads": 2, "cl": True},
    {"name": "N96 M128 crop128 b8 2thr CL", "N": 96, "M": 128, "crop": 128, "batch": 8, "threads": 2, "cl": True},
]


def step_time(c: dict, images: list[np.ndarray], steps: int) -> float:
    torch.set_num_threads(c["threads"])
    model = build("modhp", N=c["N"], M=c["M"])
    fmt = torch.channels_last if c["cl"] else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    times = []
    for i in range(steps + 3):
        x = torch.from_numpy(sample_batch(images, c["crop"], c["batch"], rng)).permute(0, 3, 1, 2).float() / 255
        x = x.contiguous(memory_format=fmt)
        t0 = time.perf_counter()
        loss, _, _ = rd_loss(model, x, torch.rand(c["batch"]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 3:  # warm-up steps excluded
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def rd_after(c: dict, minutes: float) -> dict:
    from neuralcodec.evaluation.evaluate import evaluate
    from neuralcodec.train.loop import export_run, train

    recipe = replace(Recipe(), model={"N": c["N"], "M": c["M"], "lmbda_min": 0.0015, "lmbda_max": 0.2},
                     crop=c["crop"], batch=c["batch"], threads=c["threads"], data=str(SHARED / "train"))
    with tempfile.TemporaryDirectory() as tmp:
        run, w = Path(tmp) / "run", Path(tmp) / "w.safetensors"
        train(recipe, run, max_minutes=minutes, progress=False)
        steps = json.loads((run / "log.jsonl").read_text().splitlines()[-1])["step"]
        export_run(run, w)
        s = evaluate(SHARED / "kodak", Path(tmp) / "eval", [10, 50, 90], [], [
            SHARED / "anchors" / "kodak" / "measured-jpeg-turbo.json"], str(w), 4, progress=False)
    return {"steps": steps, "curve": s["curves"]["neuralcodec"], "bd_rate": s["bd_rate"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per candidate")
    ap.add_argument("--minutes", type=float, default=0, help="train each candidate this long and eval (0: skip)")
    a = ap.parse_args()
    images = load_corpus(SHARED / "train", 256)[:200]
    rows = []
    for c in CANDIDATES:
        s = step_time(c, images, a.steps)
        row = {**c, "s_per_step": round(s, 3), "kpx_per_s": round(c["batch"] * c["crop"] ** 2 / s / 1e3, 1)}
        if a.minutes:
            row["rd"] = rd_after(c, a.minutes)
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = HERE / "results" / "pilot.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=1) + "\n")
    print("\n| candidate | s/step | kpx/s |\n|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['s_per_step']} | {r['kpx_per_s']} |")


if __name__ == "__main__":
    main()
