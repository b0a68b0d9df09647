"""Input steps of an 8-bit prior (codec/coding/integer8.py), fitted to a trained model's own activations.

A Gaussian level's prior network (the flagship's h_s) rounds the activations between its layers to 7-bit codes
standing for -8 .. 119 steps. One step per layer is fitted here: the 99.9th percentile of that layer's activations
/ 119, over crops of training images coded at several rates as the decoder sees them (z rounded around its
medians). Clipping the top 0.1 % buys a finer step: on the flagship (`bench/experiments/int8_stack.py`) the largest
value / 119 costs +7.4 / +1.6 / +1.0 % of y's bits at quality 0 / 50 / 100, the 99.9th percentile +0.1 / -0.1 /
-0.3 %, the 99.5th +5.7 / +3.3 / +4.8 %.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neuralcodec.coding.integer8 import CODE_MAX, CODE_ZERO
from neuralcodec.errors import NeuralcodecError

PERCENTILE = 99.9
IMAGES = 16  # calibration images (each coded at RATES)
CROP = (512, 768)  # rows, columns of each calibration crop (smaller images are taken whole, cut to 64 px)
RATES = (0.0, 0.5, 1.0)  # quarters of the rate range: t = t_min + (1 - t_min) * r


class CalibrationError(NeuralcodecError, ValueError):
    """The model or the images do not allow fitting an 8-bit prior."""


def image_paths(root: str | os.PathLike, count: int) -> list[Path]:
    """``count`` images spread evenly over ``root``'s sorted image files."""
    if not Path(root).is_dir():
        raise CalibrationError(f"no directory {root} to calibrate on")
    files = sorted(p for p in Path(root).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    if not files:
        raise CalibrationError(f"no images to calibrate on in {root}")
    return files[::max(1, len(files) // count)][:count]


def prior_steps(model, images: list[Path]) -> dict[str, list[float]]:
    """For each Gaussian level's prior of ``model`` (a two-level model: a factorized z above a Gaussian y), the
    step of each of its layers' inputs after the first, fitted on ``images``."""
    import torch
    from PIL import Image
    from torch import nn

    levels = model.levels
    if len(levels) != 2 or levels[0].kind != "factorized" or levels[1].kind != "gaussian":
        raise CalibrationError(f"{type(model).__name__}: an 8-bit prior needs a factorized level above a Gaussian one")
    prior = getattr(model, levels[1].module)
    kinds = [type(m).__name__ for m in prior]
    if kinds[1::2] != ["LeakyReLU"] * (len(prior) // 2) or len(prior) % 2 == 0:
        raise CalibrationError(f"{levels[1].module}: an 8-bit prior alternates convolutions and leaky ReLUs")
    eb = getattr(model, levels[0].module)
    medians = eb.quantiles[:, 0, 1].detach().reshape(1, -1, 1, 1) if hasattr(eb, "quantiles") else 0.0
    acts: list[list[np.ndarray]] = [[] for _ in range(len(prior) // 2)]
    model = model.eval()
    with torch.no_grad():
        for path in images:
            rgb = np.asarray(Image.open(path).convert("RGB"))
            h, w = (min(s, c) // 64 * 64 for s, c in zip(rgb.shape[:2], CROP))
            if not (h and w):
                continue
            x = torch.from_numpy(rgb[:h, :w].copy()).permute(2, 0, 1)[None].float() / 255
            for r in RATES:
                t = torch.tensor([model.t_min + (1 - model.t_min) * r])
                y = model.analysis(x, t)
                z = model.upper_levels(y, t)[0]
                a = torch.round(z - medians) + medians
                for i, m in enumerate(prior):
                    a = m(a)
                    if isinstance(m, nn.LeakyReLU):
                        acts[i // 2].append(a.flatten().numpy())
    if not acts[0]:
        raise CalibrationError("no calibration image is 64 px on each side")
    steps = [float(np.percentile(np.concatenate(a), PERCENTILE)) / (CODE_MAX - CODE_ZERO) for a in acts]
    if not all(np.isfinite(s) and s > 0 for s in steps):
        raise CalibrationError(f"activations give no usable step ({steps})")
    return {levels[1].module: steps}
