"""What torch.compile buys a training step of the flagship on this CPU (the recipe's ``compile`` flag).

Eager, compiled, eager again (the repeat brackets the machine's drift), each on a fresh model: the median of
``--steps`` timed steps after three warm-up steps (the compiled model's first step includes compiling it).
Batch 8 of 128 px crops, the flagship's size, ``--threads`` threads.

    python bench/compile_step.py [--threads 2] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "compile_step.json"


def step_times(compiled: bool, steps: int) -> tuple[float, float]:
    """(median seconds per step, seconds of the first step) of the flagship's training step."""
    import torch

    from neuralcodec.models import build
    from neuralcodec.train import rd_terms

    torch.manual_seed(0)
    model = build("modhp", N=128, M=192, lmbda_min=0.0015, lmbda_max=0.2).to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if not n.endswith("quantiles")], lr=1e-5)
    x = torch.rand(8, 3, 128, 128).contiguous(memory_format=torch.channels_last)
    times = []
    for _ in range(steps + 3):
        t0 = time.perf_counter()
        loss = rd_terms(forward, x, torch.rand(8), 0.1)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[3:])), times[0]


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    for name, compiled in (("eager", False), ("compiled", True), ("eager_again", False)):
        med, first = step_times(compiled, args.steps)
        rows[name] = {"s_per_step": round(med, 3), "first_step_s": round(first, 1)}
        print(name, rows[name], flush=True)
    ratio = rows["compiled"]["s_per_step"] / np.mean([rows["eager"]["s_per_step"], rows["eager_again"]["s_per_step"]])
    result = {"torch": torch.__version__, "threads": args.threads, "steps": args.steps, **rows,
              "compiled_over_eager": round(float(ratio), 3)}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"compiled / eager = {ratio:.3f}; {OUT}")


if __name__ == "__main__":
    main()
