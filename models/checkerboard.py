"""The flagship with a checkerboard spatial context on y (He et al., "Checkerboard context model for efficient
learned image compression", CVPR 2021).

y is split into anchors (latent positions with even row + column) and non-anchors. Anchors are coded under the
hyperprior alone, exactly as in the flagship. Non-anchors are coded second, and their Gaussian parameters add a
correction to the hyperprior's: an entropy-parameters network (1x1 convolutions) reads the hyper-synthesis
output and a 5x5 context convolution of the anchors' coded residuals (y - mu, what the hyperprior did not
predict, which neighbours share: a context of the residuals learns far faster from a trained hyperprior than
one of the decoded values). Both passes are parallel over the whole
latent (no pixel-serial autoregression). The correction's last layer starts at zero, so the model initialized
from flagship weights starts out as exactly the flagship and only learns to spend fewer bits.
"""

from __future__ import annotations

import torch
from torch import nn

from neuralcodec.coding.integer import ACT_BITS, ACT_LIMIT, CONTEXT_LIMIT
from neuralcodec.models import Level
from neuralcodec.models.layers import compressai as _compressai
from neuralcodec.models.modulated import SCALE_BOUND, ModulatedHyperprior

# the coder's rules, mirrored in training: |v| of an anchor entering the context is clamped to CONTEXT_LIMIT, and
# |residual / gain| to the integer activations' range
CONTEXT_CLAMP = ACT_LIMIT / 2**ACT_BITS


def anchor_mask(h: int, w: int, device=None) -> torch.Tensor:
    """(1, 1, h, w) float mask, 1 at anchors ((row + column) even)."""
    r = torch.arange(h, device=device)[:, None]
    c = torch.arange(w, device=device)[None, :]
    return ((r + c) % 2 == 0).float()[None, None]


class CheckerboardHyperprior(ModulatedHyperprior):
    """Modulated mean-scale hyperprior + checkerboard context (model id ``modhpc``)."""

    def __init__(self, N: int = 128, M: int = 192, lmbda_min: float = 0.0015, lmbda_max: float = 0.2,
                 hidden: int = 512, t_min: float = 0.0, inference: bool = False):
        super().__init__(N, M, lmbda_min, lmbda_max, t_min, inference)
        self.hidden = hidden
        self.cb_ctx = nn.Sequential(nn.Conv2d(M, M, 5, padding=2))
        self.cb_ep = nn.Sequential(
            nn.Conv2d(3 * M, hidden, 1), nn.LeakyReLU(inplace=True),
            nn.Conv2d(hidden, hidden * 4 // 5, 1), nn.LeakyReLU(inplace=True),
            nn.Conv2d(hidden * 4 // 5, 2 * M, 1),
        )
        nn.init.zeros_(self.cb_ep[-1].weight)
        nn.init.zeros_(self.cb_ep[-1].bias)
        self.levels = (Level("z", "factorized", "entropy_bottleneck", N, 64), Level("y", "checkerboard", "h_s", M, 16))
        self.context_modules = ("cb_ctx", "cb_ep")  # integer networks of the y level besides its prior h_s

    def context_params(self, hs: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Unscaled (S, U) of the non-anchors: h_s output ``hs`` plus the correction from ``anchors`` (the
        anchors' coded residuals v = round(y - mu) divided by the gain, zero elsewhere: what the hyperprior
        did not predict, which is what neighbours share)."""
        ctx = self.cb_ctx(anchors.clamp(-CONTEXT_CLAMP, CONTEXT_CLAMP))
        return hs + self.cb_ep(torch.cat([hs, ctx], 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict:
        ops = _compressai().ops
        y = self.analysis(x, t)
        z = self.hyper_analysis(y, t)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        hs = self.h_s(z_hat)
        g = self.gain(t)
        mask = anchor_mask(y.shape[2], y.shape[3], y.device)
        # the anchors' coded residuals over the gain, as the integer path forms them: clamp(v) / g, zero elsewhere
        v = ops.quantize_ste(y - hs[:, self.M:] * g).clamp(-CONTEXT_LIMIT, CONTEXT_LIMIT)
        params = torch.lerp(self.context_params(hs, v / g * mask), hs, mask)  # anchors: hs alone
        scales, means = params.chunk(2, 1)
        scales, means = (scales * g).clamp_min(SCALE_BOUND), means * g
        _, y_likelihoods = self.gaussian_conditional(y, scales, means=means)
        y_hat = ops.quantize_ste(y - means) + means
        x_hat = self.synthesis(y_hat, t)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def fast_parameters(self) -> list[str]:
        """The rate controls and the context networks (new when starting from the flagship) train faster."""
        return super().fast_parameters() + [n for n, _ in self.named_parameters() if n.startswith(("cb_ctx.", "cb_ep."))]

    def config(self) -> dict:
        return {**super().config(), "hidden": self.hidden}
