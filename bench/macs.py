"""Multiply-adds per pixel and parameter counts of every registered model (default configs).

Counts convolutions (plain and transposed), GDN (a C x C 1x1 convolution per position) and linear layers,
with forward hooks on a 256 x 256 input: the encoder side (analysis + upper levels), the prior networks (run
by both sides, as integer networks) and the synthesis. Entropy coding is not counted.

    python bench/macs.py            # table on stdout, bench/results/macs.json
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from neuralcodec.models import ARCHITECTURES, build

HERE = Path(__file__).resolve().parent
SIZE = 256


def count(module: nn.Module, fn) -> int:
    """Multiply-adds of ``fn()`` inside ``module``'s convolutions, GDNs and linear layers."""
    total = [0]

    def conv_hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        if isinstance(m, nn.ConvTranspose2d):  # each input position scatters into k*k*out outputs
            total[0] += inp[0].numel() // inp[0].shape[0] * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
        else:
            total[0] += out.numel() // out.shape[0] * k

    def gdn_hook(m, inp, out):
        c = inp[0].shape[1]
        total[0] += inp[0].numel() // inp[0].shape[0] * c

    def linear_hook(m, inp, out):
        total[0] += m.in_features * m.out_features

    handles = []
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            handles.append(m.register_forward_hook(conv_hook))
        elif type(m).__name__ == "GDN":
            handles.append(m.register_forward_hook(gdn_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            fn()
    finally:
        for h in handles:
            h.remove()
    return total[0]


def measure(arch: str) -> dict:
    """Cost of ``arch`` in the configuration its shipped recipe trains."""
    from neuralcodec.train.loop import Recipe, default_recipe

    model = build(arch, **Recipe.load(default_recipe(arch)).model, inference=True).eval()
    x = torch.rand(1, 3, SIZE, SIZE)
    t = torch.tensor([0.5])
    px = SIZE * SIZE
    y = model.analysis(x, t)
    upper = model.upper_levels(y, t)
    encoder = count(model, lambda: model.upper_levels(model.analysis(x, t), t))
    priors = 0
    levels = [*upper, y]
    for i, lv in enumerate(model.levels):
        if lv.kind in ("gaussian", "checkerboard"):
            prior = getattr(model, lv.module)
            priors += count(prior, lambda: prior(levels[i - 1]))
        if lv.kind == "checkerboard":  # the context and entropy-parameter networks (run once, over all of y)
            hs = prior(levels[i - 1])
            priors += count(model, lambda: model.context_params(hs, levels[i]))
    hats = {lv.name: v for lv, v in zip(model.levels, levels)}
    decoder = count(model, lambda: model.synthesis(*[hats[n] for n in model.synthesis_levels], t))
    params = sum(p.numel() for n, p in model.state_dict().items() if not n.endswith("quantiles"))
    return {"arch": arch, "config": model.config(), "params": params, "encoder_macs_per_px": round(encoder / px),
            "prior_macs_per_px": round(priors / px), "decoder_macs_per_px": round(decoder / px)}


def main():
    warnings.filterwarnings("ignore")
    rows = [measure(a) for a in ARCHITECTURES]
    print(f"{'model':8} {'params':>10} {'enc MAC/px':>11} {'prior MAC/px':>13} {'dec MAC/px':>11}")
    for r in rows:
        print(f"{r['arch']:8} {r['params']:>10,} {r['encoder_macs_per_px']:>11,} {r['prior_macs_per_px']:>13,} "
              f"{r['decoder_macs_per_px']:>11,}")
    (HERE / "results" / "macs.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
