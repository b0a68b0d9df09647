"""One optimizer step of the flagship (M = 320), foreach against fused Adam, and the gradient clipping beside
them, alternating in one run on random gradients (issue 19: the step profile's "clip+adam").

    python bench/adam_step.py [--repeat 15] [--threads 2]

Prints the median milliseconds of each and the largest difference of the weights after the same steps. Run it
with the training paused (kill -STOP), or on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    from neuralcodec.models import build

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = build("modhp", N=128, M=320, lmbda_min=0.0015, lmbda_max=0.2, t_min=-0.3)
    params = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith("quantiles")]
    copies = {k: [p.detach().clone().requires_grad_() for p in params] for k in ("foreach", "fused")}
    opts = {k: torch.optim.Adam([{"params": ps[: len(ps) // 2]}, {"params": ps[len(ps) // 2:], "lr": 5e-4}],
                                lr=1e-4, **{k: True}) for k, ps in copies.items()}
    times = {k: [] for k in (*opts, "clip")}
    for _ in range(a.repeat):
        grads = [torch.randn_like(p) * 1e-3 for p in params]
        for k, o in opts.items():
            for p, g in zip(copies[k], grads):
                p.grad = g.clone()
            t0 = time.perf_counter()
            o.step()
            times[k].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(copies["fused"], 1.0)
        times["clip"].append(time.perf_counter() - t0)
    diff = max((x - y).abs().max().item() for x, y in zip(copies["foreach"], copies["fused"]))
    print(f"{sum(p.numel() for p in params):,} parameters, {a.threads} threads, median of {a.repeat}:")
    for k, v in times.items():
        print(f"  {k:8s} {1000 * statistics.median(v):6.1f} ms")
    print(f"  largest weight difference foreach vs fused after {a.repeat} steps: {diff:.1e}")


if __name__ == "__main__":
    main()
