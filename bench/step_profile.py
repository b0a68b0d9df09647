"""Where a training step of the flagship goes, and what the training GDN saves.

    python bench/step_profile.py [--M 320] [--threads 2] [--steps 6] [-o bench/results/step_profile.json]

1. Gradient check: the training GDN (models/layers.py `training_gdn`) against compressai's GDN on the same
   weights and batch: loss and every gradient must agree to float rounding.
2. Step time, alternating the two GDNs and compressai's MeanScaleHyperprior of the same widths step by step (so
   machine noise hits all alike); median of --steps each,
   forward + backward of the rate-distortion loss, batch 8 of 128 px crops, channels_last.
3. A torch.profiler table of one step with the training GDN (self CPU time per op and input shape).
The run's own per-phase clock (data, forward, backward, clip+adam, ema, aux) is in every line of a run's
log.jsonl (`ms_per_phase`). For numbers that count, run it with no training in the background.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from neuralcodec.models import build, layers
from neuralcodec.train.loop import rd_terms

HERE = Path(__file__).resolve().parent


def make(M: int, compressai_gdn: bool, seed: int = 0):
    torch.manual_seed(seed)
    model = build("modhp", N=128, M=M, lmbda_min=0.0015, lmbda_max=0.2, t_min=-0.3)
    if compressai_gdn:  # swap in compressai's own GDN, same parameters
        base = layers.compressai().layers.GDN
        for seq in (model.g_a, model.g_s):
            for i, layer in enumerate(seq):
                if isinstance(layer, base):
                    new = base(layer.beta.shape[0], inverse=layer.inverse)
                    new.load_state_dict(layer.state_dict())
                    seq[i] = new
    return model.to(memory_format=torch.channels_last)


def step(model, x, t):
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    loss = rd_terms(model, x, t, 0.1)[0]
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    return loss, t1 - t0, t2 - t1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--M", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("-o", "--output", type=Path, default=HERE / "results" / "step_profile.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fast, slow = make(args.M, False), make(args.M, True)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 3, 128, 128, generator=g).contiguous(memory_format=torch.channels_last)
    t = torch.rand(8, generator=g)
    # 1. gradients (the noise of the rate term is drawn from torch's generator: same seed for both)
    torch.manual_seed(5)
    lf = step(fast, x, t)[0]
    torch.manual_seed(5)
    ls = step(slow, x, t)[0]
    worst = {}
    sp = dict(slow.named_parameters())
    for n, p in fast.named_parameters():
        if p.grad is None:
            continue
        q = sp[n].grad
        worst[n] = float((p.grad - q).abs().max() / q.abs().max().clamp_min(1e-12))
    worst_rel = max(worst.values())
    print(f"loss {lf.item():.6f} vs {ls.item():.6f}; worst relative gradient difference {worst_rel:.2e} "
          f"({max(worst, key=worst.get)})")
    # 2. step time, alternating
    from compressai.models import MeanScaleHyperprior

    class Plain(MeanScaleHyperprior):  # compressai's fixed-rate model of the same widths, one lambda for all
        lmbda_max = 0.2

        def forward(self, x, t):
            return super().forward(x)

        def lmbda(self, t):
            return 0.2 * 0.0075 ** t

    plain = Plain(128, args.M).to(memory_format=torch.channels_last)
    arms = (("training_gdn", fast), ("compressai_gdn", slow), ("compressai_meanscale", plain))
    times = {name: {"forward": [], "backward": []} for name, _ in arms}
    for i in range(args.steps + 1):
        for name, model in arms:
            _, f, b = step(model, x, t)
            if i:  # the first is warm-up
                times[name]["forward"].append(f)
                times[name]["backward"].append(b)
    med = {k: {p: round(1000 * statistics.median(v), 1) for p, v in d.items()} for k, d in times.items()}
    for k, d in med.items():
        d["step"] = round(d["forward"] + d["backward"], 1)
        print(f"{k:16s} forward {d['forward']:7.1f} ms  backward {d['backward']:7.1f} ms  step {d['step']:7.1f} ms")
    ratio = med["training_gdn"]["step"] / med["compressai_gdn"]["step"]
    print(f"training GDN / compressai GDN step time: {ratio:.3f}")
    print(f"flagship / compressai MeanScaleHyperprior({128}, {args.M}) step time: "
          f"{med['training_gdn']['step'] / med['compressai_meanscale']['step']:.3f}")
    # 3. profile of the training-GDN step
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step(fast, x, t)
    rows = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)[:15]
    top = [{"op": e.key, "ms": round(e.self_cpu_time_total / 1000, 1), "calls": e.count,
            "shapes": str(e.input_shapes)[:120]} for e in rows]
    for r in top:
        print(f"{r['ms']:8.1f} ms {r['calls']:4d}  {r['op'][:32]:32s} {r['shapes'][:90]}")
    args.output.write_text(json.dumps({
        "torch": torch.__version__, "threads": args.threads, "M": args.M, "steps": args.steps,
        "loss": [lf.item(), ls.item()], "worst_relative_gradient_difference": worst_rel,
        "median_ms": med, "ratio_training_over_compressai": round(ratio, 3),
        "ratio_flagship_over_meanscale": round(med["training_gdn"]["step"] / med["compressai_meanscale"]["step"], 3), "profile_top": top}, indent=1))


if __name__ == "__main__":
    main()
