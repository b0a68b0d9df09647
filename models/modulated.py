"""The flagship: a mean-scale hyperprior made variable-rate by modulation.

Analysis g_a and synthesis g_s are the mean-scale hyperprior transforms of Minnen et al. (2018) built from
compressai's GDN layers; a small modulation network (Yang et al., "Variable rate deep image compression with
modulated autoencoder", 2020) maps the rate selector lambda to positive per-channel scales applied after
every stage of g_a (modulation) and before every stage of g_s (demodulation). One set of weights covers
the whole lambda range. The model knows nothing of files or entropy coders: it maps tensors to tensors.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from neuralcodec.models import Level, layers
from neuralcodec.models.layers import compressai as _compressai, conv, deconv

SCALE_BOUND = 0.11


class Modulation(nn.Module):
    """Maps the rate t (shape B) to positive scales (B, C, 1, 1) per stage."""

    def __init__(self, channels: list[int], hidden: int = 64):
        super().__init__()
        self.channels = channels
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, sum(channels)))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, t: torch.Tensor) -> list[torch.Tensor]:
        s = torch.exp(self.net(t.reshape(-1, 1)))
        return [v[:, :, None, None] for v in torch.split(s, self.channels, dim=1)]


class ModulatedHyperprior(nn.Module):
    """Mean-scale hyperprior codec whose transforms are modulated by lambda.

    ``t`` everywhere is the normalized rate selector: lambda = lmbda_min * (lmbda_max/lmbda_min) ** t, over
    [t_min, 1]: ``t_min`` < 0 extends the range below lmbda_min (weights trained before it existed have 0).
    Besides the per-channel modulation, y is coded at a quantization step 1/gain(t) with
    gain(t) = exp(rate_gain * (t - 1/2)); the hyperprior works on the unscaled latent, its means and scales
    are scaled by the same gain. ``rate_gain`` starts at the high-rate optimum 0.5 * ln(lmbda_max/lmbda_min)
    (step proportional to lambda^-1/2) and is learned.
    """

    stride = 64  # total down-sampling of the hyper-latent: inputs are padded to a multiple of this
    synthesis_levels = ("y",)
    synthesis_modules = ("g_s.", "mod_s.")  # what a decoder-only fine-tune may change
    analysis_modules = ("g_a.", "h_a.", "mod_a.")  # what only an encoder needs (a decoder-only archive drops them)
    training_only = ("entropy_bottleneck.", "gaussian_conditional.")  # the entropy models' training state

    def __init__(self, N: int = 128, M: int = 192, lmbda_min: float = 0.0015, lmbda_max: float = 0.2,
                 t_min: float = 0.0, inference: bool = False):
        """``inference=True`` builds the coding model without compressai: the same transforms and parameter
        names (models/layers.py), and of the entropy models only the hyper-latent's medians."""
        super().__init__()
        self.N, self.M = N, M
        self.lmbda_min, self.lmbda_max = lmbda_min, lmbda_max
        if not (isinstance(t_min, (int, float)) and -1.0 <= t_min <= 0.0):
            raise ValueError(f"t_min must be within [-1, 0], got {t_min}")
        self.t_min = t_min
        GDN = layers.GDN if inference else _compressai().layers.GDN  # noqa: N806
        self.g_a = nn.ModuleList([conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M)])
        self.g_s = nn.ModuleList([
            deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
            deconv(N, N), GDN(N, inverse=True), deconv(N, 3),
        ])
        self.h_a = nn.Sequential(
            conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), conv(N, N), nn.LeakyReLU(inplace=True), conv(N, N),
        )
        self.h_s = nn.Sequential(
            deconv(N, M), nn.LeakyReLU(inplace=True), deconv(M, M * 3 // 2), nn.LeakyReLU(inplace=True),
            conv(M * 3 // 2, M * 2, 3, 1),
        )
        self.mod_a = Modulation([N, N, N, M])
        self.mod_s = Modulation([M, N, N, N])
        if inference:
            self.entropy_bottleneck = layers.Quantiles(N)
        else:
            self.entropy_bottleneck = _compressai().entropy_models.EntropyBottleneck(N)
            self.gaussian_conditional = _compressai().entropy_models.GaussianConditional(None, scale_bound=SCALE_BOUND)
        self.rate_gain = nn.Parameter(torch.tensor(0.5 * math.log(lmbda_max / lmbda_min)))
        self.levels = (Level("z", "factorized", "entropy_bottleneck", N, 64), Level("y", "gaussian", "h_s", M, 16))

    # -- rate selector ---------------------------------------------------------------------------------
    def lmbda(self, t: torch.Tensor) -> torch.Tensor:
        return self.lmbda_min * (self.lmbda_max / self.lmbda_min) ** t

    def gain(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse quantization step of y at rate ``t``, shape (B, 1, 1, 1)."""
        return torch.exp(self.rate_gain * (t.reshape(-1, 1, 1, 1) - 0.5))

    # -- the four transforms ---------------------------------------------------------------------------
    def analysis(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        scales = iter(self.mod_a(t))
        for layer in self.g_a:
            x = layer(x)
            if not isinstance(layer, nn.Conv2d) or layer is self.g_a[-1]:  # after each GDN and the last conv
                x = x * next(scales)
        return x * self.gain(t)

    def synthesis(self, y_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        scales = iter(self.mod_s(t))
        x = y_hat / self.gain(t)
        for layer in self.g_s:
            if isinstance(layer, nn.ConvTranspose2d):
                x = x * next(scales)
            x = layer(x)
        return x

    def hyper_analysis(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.h_a(y / self.gain(t))

    def upper_levels(self, y: torch.Tensor, t: torch.Tensor) -> list[torch.Tensor]:
        return [self.hyper_analysis(y, t)]

    def hyper_synthesis(self, z_hat: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (scales, means) of the conditional Gaussian of y at rate ``t``; scales are lower-bounded."""
        scales, means = self.h_s(z_hat).chunk(2, 1)
        g = self.gain(t)
        return (scales * g).clamp_min(SCALE_BOUND), means * g

    # -- training --------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict:
        """Training pass: noisy likelihoods for the rate, straight-through rounding for the decoder input."""
        y = self.analysis(x, t)
        z = self.hyper_analysis(y, t)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        scales, means = self.hyper_synthesis(z_hat, t)
        _, y_likelihoods = self.gaussian_conditional(y, scales, means=means)
        y_hat = _compressai().ops.quantize_ste(y - means) + means
        x_hat = self.synthesis(y_hat, t)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def fast_parameters(self) -> list[str]:
        """Names of the few rate-control parameters that train at a higher learning rate."""
        return [n for n, _ in self.named_parameters() if n.startswith(("mod_a.", "mod_s.", "rate_gain"))]

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()

    def config(self) -> dict:
        cfg = {"N": self.N, "M": self.M, "lmbda_min": self.lmbda_min, "lmbda_max": self.lmbda_max}
        return {**cfg, "t_min": self.t_min} if self.t_min else cfg
