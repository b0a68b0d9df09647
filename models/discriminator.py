"""A patch discriminator for the adversarial (GAN) training stages. Training only: never shipped."""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): strided 4x4 convolutions scoring overlapping ~70 px patches as real/fake.
    Spectral normalization keeps the hinge game stable with small batches."""

    def __init__(self, channels: int = 64, layers: int = 3):
        super().__init__()
        sn = nn.utils.spectral_norm
        mods, c = [sn(nn.Conv2d(3, channels, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)], channels
        for _ in range(layers - 1):
            mods += [sn(nn.Conv2d(c, 2 * c, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
            c *= 2
        mods += [sn(nn.Conv2d(c, 1, 4, 1, 1))]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores (B, 1, h, w) of images in [0, 1]; high means real."""
        return self.net(x * 2 - 1)
