"""The seed designs neuralcodec grew from, as fixed-rate codecs behind the flagship's model interface.

Each is a set of transforms plus one coded latent level per prior (neuralcodec.models.Level); all are trained
for rate + lambda * 255^2 * MSE at one lambda (``lmbda``), and ``t`` (the rate selector) is ignored.

- ``resgdn`` :class:`ResidualAttentionAutoencoder`: residual conv+GDN blocks, simplified attention masks (conv +
  sigmoid), sub-pixel (pixel-shuffle) up-sampling in the decoder, one factorized latent.
- ``lighthp`` :class:`LightHyperprior`: a small mean-scale hyperprior (about a quarter of the flagship's
  multiply-adds per pixel).
"""

from __future__ import annotations

import torch
from torch import nn

from neuralcodec.models import Level, layers
from neuralcodec.models.layers import compressai, conv, deconv

SCALE_BOUND = 0.11


class FixedRate(nn.Module):
    """What every fixed-rate seed model shares: one lambda, entropy models built for training or coding."""

    synthesis_levels = ("y",)
    training_only = ("entropy_bottleneck.", "gaussian_conditional.")

    def __init__(self, lmbda: float, inference: bool):
        super().__init__()
        self.lmbda_value = self.lmbda_max = lmbda
        self.inference = inference

    def lmbda(self, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(t, self.lmbda_value)

    def factorized(self, channels: int) -> nn.Module:
        if self.inference:
            return layers.Quantiles(channels)
        return compressai().entropy_models.EntropyBottleneck(channels)

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()

    def upper_levels(self, y: torch.Tensor, t: torch.Tensor) -> list[torch.Tensor]:
        return []

    @staticmethod
    def ste(x: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        """round(x - center) + center, with the gradient of the identity."""
        return compressai().ops.quantize_ste(x - center) + center


class ResidualGDN(nn.Module):
    """x + conv3x3(GDN(conv3x3(x))): a residual block whose nonlinearity is (inverse) GDN."""

    def __init__(self, channels: int, inverse: bool, inference: bool):
        super().__init__()
        self.conv1 = conv(channels, channels, 3, 1)
        self.gdn = layers.gdn(channels, inverse, inference)
        self.conv2 = conv(channels, channels, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.gdn(self.conv1(x)))


class AttentionMask(nn.Module):
    """Simplified attention: x * (1 + sigmoid(mask(x))), the mask two small convolutions."""

    def __init__(self, channels: int):
        super().__init__()
        self.mask = nn.Sequential(conv(channels, channels // 2, 1, 1), nn.ReLU(inplace=True),
                                  conv(channels // 2, channels, 3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1 + torch.sigmoid(self.mask(x)))


def subpixel(cin: int, cout: int) -> nn.Sequential:
    """2x up-sampling by sub-pixel convolution: conv3x3 to 4*cout channels, then pixel shuffle."""
    return nn.Sequential(conv(cin, 4 * cout, 3, 1), nn.PixelShuffle(2))


class ResidualAttentionAutoencoder(FixedRate):
    """Residual GDN autoencoder with attention and sub-pixel up-sampling, factorized prior (``resgdn``)."""

    stride = 16

    def __init__(self, N: int = 64, M: int = 160, lmbda: float = 0.013, inference: bool = False):
        super().__init__(lmbda, inference)
        self.N, self.M = N, M
        g = lambda c, inv=False: layers.gdn(c, inv, inference)  # noqa: E731
        res = lambda c, inv=False: ResidualGDN(c, inv, inference)  # noqa: E731
        self.g_a = nn.Sequential(
            conv(3, N), g(N), res(N),
            conv(N, N), g(N), res(N), AttentionMask(N),
            conv(N, N), g(N), res(N),
            conv(N, M), AttentionMask(M),
        )
        self.g_s = nn.Sequential(
            AttentionMask(M), subpixel(M, N), g(N, True), res(N, True),
            subpixel(N, N), g(N, True), res(N, True), AttentionMask(N),
            subpixel(N, N), g(N, True), res(N, True),
            subpixel(N, 3),
        )
        self.entropy_bottleneck = self.factorized(M)
        self.levels = (Level("y", "factorized", "entropy_bottleneck", M, 16),)

    def analysis(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.g_a(x)

    def synthesis(self, y_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.g_s(y_hat)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict:
        y = self.g_a(x)
        _, likelihoods = self.entropy_bottleneck(y)
        medians = self.entropy_bottleneck.quantiles[:, 0, 1].detach().view(1, -1, 1, 1)
        return {"x_hat": self.g_s(self.ste(y, medians)), "likelihoods": {"y": likelihoods}}

    def config(self) -> dict:
        return {"N": self.N, "M": self.M, "lmbda": self.lmbda_value}


class LightHyperprior(FixedRate):
    """A small mean-scale hyperprior (``lighthp``): 5x5 stride-2 convolutions with GDN, N=64/M=96 by default."""

    stride = 64

    def __init__(self, N: int = 64, M: int = 96, lmbda: float = 0.013, inference: bool = False):
        super().__init__(lmbda, inference)
        self.N, self.M = N, M
        g = lambda c, inv=False: layers.gdn(c, inv, inference)  # noqa: E731
        self.g_a = nn.Sequential(conv(3, N), g(N), conv(N, N), g(N), conv(N, N), g(N), conv(N, M))
        self.g_s = nn.Sequential(deconv(M, N), g(N, True), deconv(N, N), g(N, True), deconv(N, N), g(N, True),
                                 deconv(N, 3))
        self.h_a = nn.Sequential(conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), conv(N, N), nn.LeakyReLU(inplace=True),
                                 conv(N, N))
        self.h_s = nn.Sequential(deconv(N, M), nn.LeakyReLU(inplace=True), deconv(M, M * 3 // 2),
                                 nn.LeakyReLU(inplace=True), conv(M * 3 // 2, M * 2, 3, 1))
        self.entropy_bottleneck = self.factorized(N)
        if not inference:
            self.gaussian_conditional = compressai().entropy_models.GaussianConditional(None, scale_bound=SCALE_BOUND)
        self.levels = (Level("z", "factorized", "entropy_bottleneck", N, 64), Level("y", "gaussian", "h_s", M, 16))

    def analysis(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.g_a(x)

    def synthesis(self, y_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.g_s(y_hat)

    def upper_levels(self, y: torch.Tensor, t: torch.Tensor) -> list[torch.Tensor]:
        return [self.h_a(y)]

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict:
        y = self.g_a(x)
        z_hat, z_likelihoods = self.entropy_bottleneck(self.h_a(y))
        scales, means = self.h_s(z_hat).chunk(2, 1)
        _, y_likelihoods = self.gaussian_conditional(y, scales.clamp_min(SCALE_BOUND), means=means)
        return {"x_hat": self.g_s(self.ste(y, means)), "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def config(self) -> dict:
        return {"N": self.N, "M": self.M, "lmbda": self.lmbda_value}
