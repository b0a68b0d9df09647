"""One training step of the flagship (forward + backward of the rate-distortion loss, batch 2 of 320-px crops, the
recipe's shape) with the interior layers in float32 and in bfloat16 autocast, alternating, on this CPU: where
the recipe's precision "auto" picks bf16 because the CPU has AVX512-BF16 but no AMX, is it still faster?

    python bench/experiments/step_precision.py [--threads 1] [--steps 5]
"""
import argparse
import statistics
import time

import torch

from neuralcodec.models import build
from neuralcodec.train.loop import rd_terms

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--steps", type=int, default=5)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
model = build("modhp", N=128, M=320, lmbda_min=0.0015, lmbda_max=0.2, t_min=-0.3).to(memory_format=torch.channels_last)
x = torch.rand(2, 3, 320, 320).contiguous(memory_format=torch.channels_last)
t = torch.tensor([0.2, 0.8])
times = {"fp32": [], "bf16": []}
for i in range(a.steps + 1):
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        model.interior_dtype = dtype
        t0 = time.perf_counter()
        loss = rd_terms(model, x, t, 0.1)[0]
        loss.backward()
        model.zero_grad(set_to_none=True)
        if i:
            times[name].append(time.perf_counter() - t0)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(cpu, f"threads {a.threads}", {k: round(statistics.median(v), 3) for k, v in times.items()})
