"""Encoder-side latent refinement: spend encode time to find cheaper symbols for the same decoder.

The analysis transform is a fast, amortized guess at the best latent. Given the decoded level above (so the
bottom level's table indexes and means are fixed, exactly as the decoder will see them), gradient steps on the
bottom latent ``y`` lower its rate-distortion cost ``bits/pixel + lambda * 255^2 * MSE`` as the decoder's own
synthesis sees it (Campos et al. 2019, "Content adaptive optimization for neural image compression").
The relaxation is the one the model trained with (rate of y plus uniform noise, distortion of the
straight-through rounded y); every step is also scored on the hard-quantized cost, and the best one seen is
kept, so a tile never ends worse (by the model's estimate, on its own pixels) than where it started. Files keep
the same format and decode with any decoder.

Two relaxations: ``ste``, the one above; ``sga``, stochastic Gumbel annealing (Yang, Bamler & Mandt 2020,
"Improving inference for neural image compression"): each element's rounding is a Gumbel-softmax sample between
floor and ceiling, pulled towards the nearer one by atanh of the distance, whose temperature anneals from 0.5
towards 0.05 so the relaxation ends at hard rounding. ``EFFORTS`` maps the encoder's effort level to a
relaxation and a step count.

Images are refined tile by tile: a window of tile + halo latents goes through the synthesis, the loss is taken
on the tile's own pixels, tiles in raster order (each sees its refined neighbours above and to the left). The
autograd graph is one window's; besides it, refinement holds about two latent-sized float tensors (y, the means).
"""

from __future__ import annotations

import math

import torch

TILE = 64  # latents of y per refinement tile (1024 px at the flagship's 16x): Kodak is one tile
HALO = 4  # latents of fixed context around a tile's window (the synthesis' receptive field)
# effort level -> (relaxation, gradient steps); 0: the analysis transform's latents as they are. Each step costs
# about one synthesis forward and backward (on Kodak ~2.5x a plain encode); bench/effort.py measures them.
EFFORTS = {0: None, 1: ("ste", 5), 2: ("ste", 10), 3: ("ste", 20), 4: ("ste", 40), 5: ("sga", 40), 6: ("sga", 60),
           7: ("sga", 100), 8: ("sga", 160), 9: ("sga", 250)}
MAX_EFFORT = max(EFFORTS)


def symbol_bits(v: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """-log2 P(v) for integer-valued ``v`` under a zero-mean Gaussian of ``scale`` discretized to unit bins."""
    a = v.abs()
    half = 2.0**-0.5
    upper = torch.special.erfc((a - 0.5) / scale * half)  # 2 * (1 - Phi((|v| - 1/2) / s))
    lower = torch.special.erfc((a + 0.5) / scale * half)
    return -torch.log2(((upper - lower) / 2).clamp_min(1e-9))


def step_size(lmbda: float) -> float:
    """Adam's step for y (in quantization steps): smaller at low rates, where most symbols sit at zero and
    wander across a rounding boundary at larger steps (fitted on Kodak crops: 0.005 at lambda 0.002, 0.02 at 0.03)."""
    return min(0.03, max(0.003, 0.02 * math.sqrt(lmbda / 0.03)))


def refine(synthesis, image, y: torch.Tensor, means: torch.Tensor, indexes: torch.Tensor,
           scale_table: torch.Tensor, lmbda: float, steps: int, valid: tuple[int, int], stride: int = 16,
           tile: int = TILE, halo: int = HALO, seed: int = 0, method: str = "ste") -> torch.Tensor:
    """Refine ``y`` (1,C,h,w) in place and return it: the latent of the target image ``image(rows, columns)``
    (pixel slices -> (1,3,rows,columns) in [0, 1], read a window at a time), whose real size is ``valid``
    (rows, columns) inside the padded h*stride x w*stride (padding costs no distortion).

    ``synthesis(y_hat)`` is the decoder; ``means`` (1,C,h,w) and the table ``indexes`` (C,h,w, integers into
    ``scale_table``) the bottom level's Gaussian parameters, fixed; ``method``: ``ste`` or ``sga`` (above).
    Deterministic for a given ``seed`` on one device (cuDNN is held to deterministic algorithms)."""
    if method not in ("ste", "sga"):
        raise ValueError(f"refinement method must be ste or sga, got {method!r}")
    out = y.detach()
    if steps <= 0:
        return out
    gen = torch.Generator().manual_seed(seed)
    h, w = y.shape[2:]
    H, W = valid  # noqa: N806
    for r0 in range(0, h, tile):
        for c0 in range(0, w, tile):
            r1, c1 = min(h, r0 + tile), min(w, c0 + tile)
            wr0, wc0, wr1, wc1 = max(0, r0 - halo), max(0, c0 - halo), min(h, r1 + halo), min(w, c1 + halo)
            # the tile's own pixels, relative to the window, clipped to the real image
            pr = slice((r0 - wr0) * stride, min(r1 * stride, H) - wr0 * stride)
            pc = slice((c0 - wc0) * stride, min(c1 * stride, W) - wc0 * stride)
            if pr.stop <= pr.start or pc.stop <= pc.start:
                continue  # padding only: leave as analysed
            win = (slice(None), slice(None), slice(wr0, wr1), slice(wc0, wc1))
            inner = (slice(None), slice(None), slice(r0 - wr0, r1 - wr0), slice(c0 - wc0, c1 - wc0))
            scales = scale_table[indexes[:, wr0:wr1, wc0:wc1].long()][None]
            target = image(slice(wr0 * stride + pr.start, wr0 * stride + pr.stop),
                           slice(wc0 * stride + pc.start, wc0 * stride + pc.stop))
            with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
                best = _refine_window(synthesis, target, out[win].clone(), means[win], scales, inner, (pr, pc),
                                      lmbda, steps, gen, method)
            out[win][inner] = best[inner]
    return out


def _refine_window(synthesis, target, y, means, scales, inner, pixels, lmbda, steps, gen, method="ste"):
    """Adam on the training relaxation (rate of y + uniform noise, distortion of the straight-through rounded
    y), scored every step on the hard-quantized cost; returns the best y scored."""
    n_px = target.shape[2] * target.shape[3]
    mask = torch.zeros_like(y)
    mask[inner] = 1
    y.requires_grad_(True)
    lr = step_size(lmbda)
    opt = torch.optim.Adam([y], lr=lr)
    best, best_cost = y.detach().clone(), math.inf
    for i in range(steps + 1):  # the last pass only scores the last step
        v = y - means
        v_hat = torch.round(v)
        with torch.set_grad_enabled(method == "ste"):  # sga takes its gradient from its own relaxed pass
            x_hat = synthesis(v + (v_hat - v).detach() + means)[:, :, pixels[0], pixels[1]].clamp(0, 1)
            distortion = lmbda * 255**2 * (x_hat - target).pow(2).mean()
        cost = (symbol_bits(v_hat.detach(), scales) * mask).sum().item() / n_px + distortion.item()
        if cost < best_cost:
            best_cost, best = cost, y.detach().clone()
        if i == steps:
            break
        if method == "sga":
            v_soft = _sga(v, 0.5 * (0.1 ** (i / max(1, steps - 1))), gen)
            x_soft = synthesis(v_soft + means)[:, :, pixels[0], pixels[1]].clamp(0, 1)
            loss = (symbol_bits(v_soft, scales) * mask).sum() / n_px + lmbda * 255**2 * (x_soft - target).pow(2).mean()
        else:
            noise = (torch.rand(v.shape, generator=gen) - 0.5).to(v.device)
            loss = (symbol_bits(v + noise, scales) * mask).sum() / n_px + distortion
        (grad,) = torch.autograd.grad(loss, [y])
        y.grad = grad * mask
        for g in opt.param_groups:  # cosine decay to zero: settle on a point instead of oscillating
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / steps))
        opt.step()
    return best


def _sga(v: torch.Tensor, tau: float, gen: torch.Generator) -> torch.Tensor:
    """A stochastic Gumbel-annealed rounding of ``v`` at temperature ``tau`` (differentiable in ``v``)."""
    lo = torch.floor(v).detach()
    eps = 1e-5
    d_lo = (v - lo).clamp(eps, 1 - eps)  # distance to floor, in (0, 1)
    logits = torch.stack([-torch.atanh(d_lo) / tau, -torch.atanh(1 - d_lo) / tau])  # nearer: likelier
    u = torch.rand(logits.shape, generator=gen).to(v.device).clamp(1e-9, 1 - 1e-9)
    weights = torch.softmax((logits - torch.log(-torch.log(u))) / tau, 0)  # a relaxed one-hot sample
    return lo + weights[1]
