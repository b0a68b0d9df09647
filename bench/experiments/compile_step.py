"""Is torch.compile safe and worth it for the flagship's training step on this CPU? (It was not: 2026-11-27.)

Two checks on the flagship (shipped weights, batch of 4 random 128 px crops at t = 0, 0.33, 0.67, 1, eval-mode
entropy models so both passes see the same rounding instead of random noise):
1. gradients: each parameter's gradient, compiled vs eager, as a relative error ||g_c - g_e|| / ||g_e||;
2. speed: median seconds per training step (batch 8), eager / compiled / eager again.

Measured 2026-11-27 with torch 2.14.1 on the 2-core CPU: the compiled step was 4-16 % faster, but the
gradient of the analysis' first convolution (g_a.0.weight, g_a.0.bias) was wrong (relative error 0.94; every
other parameter within 1e-5). A 2-hour run with ``compile`` drifted after ~1,700 steps and collapsed to
~23 dB on Kodak, so training does not compile.

    python bench/experiments/compile_step.py [--threads 2] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "results" / "compile_step.json"


def flagship():
    import torch

    from neuralcodec.zoo import weights_io
    from neuralcodec.models import build

    model = build("modhp", N=128, M=192, lmbda_min=0.0015, lmbda_max=0.2).to(memory_format=torch.channels_last)
    model.load_state_dict(weights_io.load_state_dict("flagship"), strict=False)
    return model


def gradient_errors() -> dict[str, float]:
    import torch

    from neuralcodec.train.loop import rd_terms

    model = flagship().eval()
    x = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(0)).contiguous(
        memory_format=torch.channels_last)
    t = torch.linspace(0, 1, 4)

    def grads(forward):
        model.zero_grad()
        rd_terms(forward, x, t, 0.1)[0].backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    eager, compiled = grads(model), grads(torch.compile(model))
    return {n: float((compiled[n] - g).norm() / (g.norm() + 1e-12)) for n, g in eager.items()}


def step_time(compiled: bool, steps: int) -> float:
    import torch

    from neuralcodec.train.loop import rd_terms

    model = flagship()
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if not n.endswith("quantiles")], lr=1e-5)
    x = torch.rand(8, 3, 128, 128).contiguous(memory_format=torch.channels_last)
    times = []
    for _ in range(steps + 3):  # three warm-up steps (the first compiles)
        t0 = time.perf_counter()
        loss = rd_terms(forward, x, torch.rand(8), 0.1)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[3:]))


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    errors = gradient_errors()
    worst = dict(sorted(errors.items(), key=lambda kv: -kv[1])[:4])
    print("largest gradient errors, compiled vs eager:", worst)
    speed = {name: step_time(c, args.steps) for name, c in (("eager", False), ("compiled", True),
                                                            ("eager_again", False))}
    ratio = speed["compiled"] / np.mean([speed["eager"], speed["eager_again"]])
    print("s/step", speed, f"compiled / eager = {ratio:.3f}")
    OUT.write_text(json.dumps({"torch": torch.__version__, "threads": args.threads, "worst_gradient_errors": worst,
                               "s_per_step": speed, "compiled_over_eager": round(float(ratio), 3)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
