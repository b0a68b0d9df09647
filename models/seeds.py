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
from neuralcodec.models.base import CodecModel
from neuralcodec.models.layers import compressai, conv, deconv

SCALE_BOUND = 0.11


class FixedRate(CodecModel):
    """What every fixed-rate seed model shares: one lambda, entropy models built for training or coding."""

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

    def analysis(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.g_a(x)

    def synthesis(self, y_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.g_s(y_hat)

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
    tile_halo = 8  # y rows of context the tiled transforms need (the residual and attention 3x3 convolutions)

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


class Hierarchy(FixedRate):
    """Three coded levels: y (1/16), z1 (1/32), z2 (1/64). z2 is factorized; z1 and y are Gaussian, their
    scales and means predicted from the decoded level above (``p1``, ``p0``: integer-coded prior networks)."""

    stride = 64

    def _hierarchy(self, M: int, M1: int, M2: int) -> None:
        act = lambda: nn.LeakyReLU(inplace=True)  # noqa: E731
        self.a1 = nn.Sequential(conv(M, M1, 3, 1), act(), conv(M1, M1))
        self.a2 = nn.Sequential(conv(M1, M2, 3, 1), act(), conv(M2, M2))
        self.p1 = nn.Sequential(deconv(M2, M1), act(), conv(M1, 2 * M1, 3, 1))
        self.p0 = nn.Sequential(deconv(M1, M), act(), conv(M, 2 * M, 3, 1))
        self.entropy_bottleneck = self.factorized(M2)
        if not self.inference:
            self.gaussian_conditional = compressai().entropy_models.GaussianConditional(None, scale_bound=SCALE_BOUND)
        self.levels = (Level("z2", "factorized", "entropy_bottleneck", M2, 64),
                       Level("z1", "gaussian", "p1", M1, 32), Level("y", "gaussian", "p0", M, 16))

    def upper_levels(self, y: torch.Tensor, t: torch.Tensor) -> list[torch.Tensor]:
        z1 = self.a1(y)
        return [self.a2(z1), z1]

    def _gaussian(self, x: torch.Tensor, params: torch.Tensor):
        scales, means = params.chunk(2, 1)
        _, likelihoods = self.gaussian_conditional(x, scales.clamp_min(SCALE_BOUND), means=means)
        return self.ste(x, means), likelihoods

    def code_levels(self, y: torch.Tensor):
        """Training: (y_hat, z1_hat, z2_hat, likelihoods) with noisy rates and rounded decoder inputs."""
        z2, z1 = self.upper_levels(y, None)
        z2_noisy, l2 = self.entropy_bottleneck(z2)
        z2_hat = self.ste(z2, self.entropy_bottleneck.quantiles[:, 0, 1].detach().view(1, -1, 1, 1))
        z1_hat, l1 = self._gaussian(z1, self.p1(z2_noisy))
        y_hat, l0 = self._gaussian(y, self.p0(z1_hat))
        return y_hat, z1_hat, z2_hat, {"y": l0, "z1": l1, "z2": l2}


class DilatedBlock(nn.Module):
    """x + conv(act(conv(x))) with dilated 3x3 convolutions: a wide receptive field at no extra cost."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation),
                                  nn.LeakyReLU(inplace=True),
                                  nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DilatedUNetVAE(Hierarchy):
    """DCU-VAE (``dcuvae``): a dilated-convolution encoder; a U-Net decoder whose skip connections carry the
    three decoded latents (z2 -> z1 -> y scales), each coded under its own hierarchical prior."""

    def __init__(self, N: int = 64, M: int = 128, M1: int = 64, M2: int = 32, lmbda: float = 0.013,
                 inference: bool = False):
        super().__init__(lmbda, inference)
        self.N, self.M, self.M1, self.M2 = N, M, M1, M2
        g = lambda c, inv=False: layers.gdn(c, inv, inference)  # noqa: E731
        self.g_a = nn.Sequential(conv(3, N), g(N), DilatedBlock(N, 2), conv(N, N), g(N), DilatedBlock(N, 2),
                                 conv(N, N), g(N), DilatedBlock(N, 4), conv(N, M))
        act = lambda: nn.LeakyReLU(inplace=True)  # noqa: E731
        self.up2 = nn.Sequential(deconv(M2, M1), act())  # z2 -> 1/32
        self.up1 = nn.Sequential(conv(2 * M1, M1, 3, 1), act(), deconv(M1, M1), act())  # [z2, z1] -> 1/16
        self.g_s = nn.Sequential(conv(M + M1, N, 3, 1), g(N, True), deconv(N, N), g(N, True), deconv(N, N),
                                 g(N, True), deconv(N, N), g(N, True), deconv(N, 3))
        self._hierarchy(M, M1, M2)

    synthesis_levels = ("y", "z1", "z2")
    tile_halo = 12  # the dilated encoder and the z2 -> z1 -> y path of the decoder see far
    synthesis_modules = ("g_s.", "up1.", "up2.")

    def synthesis(self, y_hat: torch.Tensor, z1_hat: torch.Tensor, z2_hat: torch.Tensor, t: torch.Tensor):
        h = self.up1(torch.cat([self.up2(z2_hat), z1_hat], 1))
        return self.g_s(torch.cat([h, y_hat], 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict:
        y_hat, z1_hat, z2_hat, likelihoods = self.code_levels(self.g_a(x))
        return {"x_hat": self.synthesis(y_hat, z1_hat, z2_hat, t), "likelihoods": likelihoods}

    def config(self) -> dict:
        return {"N": self.N, "M": self.M, "M1": self.M1, "M2": self.M2, "lmbda": self.lmbda_value}


class HierarchicalVAE(Hierarchy):
    """Hierarchical VAE(-GAN) (``hvae``): GDN transforms, three latent levels each coded under a prior
    conditioned on the level above; the decoder reads y. Its GAN stage is a training recipe (``gan_weight``)."""

    def __init__(self, N: int = 64, M: int = 128, M1: int = 64, M2: int = 32, lmbda: float = 0.013,
                 inference: bool = False):
        super().__init__(lmbda, inference)
        self.N, self.M, self.M1, self.M2 = N, M, M1, M2
        g = lambda c, inv=False: layers.gdn(c, inv, inference)  # noqa: E731
        self.g_a = nn.Sequential(conv(3, N), g(N), conv(N, N), g(N), conv(N, N), g(N), conv(N, M))
        self.g_s = nn.Sequential(deconv(M, N), g(N, True), deconv(N, N), g(N, True), deconv(N, N), g(N, True),
                                 deconv(N, 3))
        self._hierarchy(M, M1, M2)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict:
        y_hat, _, _, likelihoods = self.code_levels(self.g_a(x))
        return {"x_hat": self.g_s(y_hat), "likelihoods": likelihoods}

    def config(self) -> dict:
        return {"N": self.N, "M": self.M, "M1": self.M1, "M2": self.M2, "lmbda": self.lmbda_value}


class BetaVAE(FixedRate):
    """β-VAE(-GAN) (``betavae``): a continuous latent trained with additive uniform noise, so its rate is the
    KL term, weighted by β (loss D + β·R, i.e. λ = 1/(β·255²)); rounded at inference, factorized prior."""

    stride = 16

    def __init__(self, N: int = 64, M: int = 128, beta: float = 1.2e-3, inference: bool = False):
        super().__init__(1.0 / (beta * 255**2), inference)
        self.N, self.M, self.beta = N, M, beta
        act = lambda: nn.LeakyReLU(inplace=True)  # noqa: E731
        self.g_a = nn.Sequential(conv(3, N), act(), conv(N, N), act(), conv(N, N), act(), conv(N, M))
        self.g_s = nn.Sequential(deconv(M, N), act(), deconv(N, N), act(), deconv(N, N), act(), deconv(N, 3))
        self.entropy_bottleneck = self.factorized(M)
        self.levels = (Level("y", "factorized", "entropy_bottleneck", M, 16),)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict:
        y_noisy, likelihoods = self.entropy_bottleneck(self.g_a(x))  # the decoder sees the noisy latent
        return {"x_hat": self.g_s(y_noisy), "likelihoods": {"y": likelihoods}}

    def config(self) -> dict:
        return {"N": self.N, "M": self.M, "beta": self.beta}


class CodePrior(nn.Module):
    """A learned categorical distribution over the codebook indices of each group (its logits)."""

    def __init__(self, groups: int, codes: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(groups, codes))


class VQVAE(FixedRate):
    """VQ-VAE(-GAN) (``vqvae``): the encoder output at 1/16 is split into ``groups`` vectors per position, each
    snapped to the nearest of ``codes`` learned vectors (one codebook); the index maps are range coded under a
    learned categorical per group. The rate is set by groups x log2(codes) bits per 16 x 16 block at most, not
    by λ (which weighs the distortion against the codebook and commitment terms)."""

    stride = 16
    synthesis_levels = ("idx",)

    def __init__(self, N: int = 64, D: int = 64, groups: int = 4, codes: int = 512, commitment: float = 0.25,
                 lmbda: float = 0.013, inference: bool = False):
        super().__init__(lmbda, inference)
        if D % groups:
            raise ValueError("D must be a multiple of groups")
        self.N, self.D, self.groups, self.codes, self.commitment = N, D, groups, codes, commitment
        act = lambda: nn.LeakyReLU(inplace=True)  # noqa: E731
        self.g_a = nn.Sequential(conv(3, N), act(), conv(N, N), act(), conv(N, N), act(), conv(N, D))
        self.g_s = nn.Sequential(deconv(D, N), act(), deconv(N, N), act(), deconv(N, N), act(), deconv(N, 3))
        self.codebook = nn.Parameter(torch.randn(codes, D // groups) * 0.1)
        self.prior = CodePrior(groups, codes)
        self.levels = (Level("idx", "categorical", "prior", groups, 16),)

    def _split(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W) -> (B*G*H*W, D/G) group vectors."""
        b, _, h, w = z.shape
        return z.view(b, self.groups, self.D // self.groups, h, w).permute(0, 1, 3, 4, 2).reshape(-1, self.D // self.groups)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index (B, G, H, W) of the codebook vector nearest each group vector of z (B, D, H, W)."""
        flat = self._split(z)
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t() + self.codebook.pow(2).sum(1)[None]
        return d.argmin(1).view(z.shape[0], self.groups, z.shape[2], z.shape[3])

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        b, g, h, w = idx.shape
        return self.codebook[idx].permute(0, 1, 4, 2, 3).reshape(b, self.D, h, w)

    def analysis(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.nearest(self.g_a(x)).float()

    def synthesis(self, idx_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.g_s(self.embed(idx_hat.round().long().clamp(0, self.codes - 1)))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict:
        z = self.g_a(x)
        idx = self.nearest(z.detach())
        q = self.embed(idx)
        vq = (q - z.detach()).pow(2).mean() + self.commitment * (z - q.detach()).pow(2).mean()
        log_p = torch.log_softmax(self.prior.logits, 1)  # (G, K)
        probs = log_p.gather(1, idx.permute(1, 0, 2, 3).reshape(self.groups, -1)).exp()
        probs = probs.view(self.groups, idx.shape[0], *idx.shape[2:]).permute(1, 0, 2, 3)
        return {"x_hat": self.g_s(z + (q - z).detach()), "likelihoods": {"idx": probs}, "extra_loss": vq}

    def aux_loss(self) -> torch.Tensor:
        return torch.zeros(())

    def config(self) -> dict:
        return {"N": self.N, "D": self.D, "groups": self.groups, "codes": self.codes,
                "commitment": self.commitment, "lmbda": self.lmbda_value}
