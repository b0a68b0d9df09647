"""The typed settings of the library: one object says how an image is encoded, one how a file is decoded.

The command line maps its flags onto these (neuralcodec.cli.main); the API functions take them as keywords or
as the object itself. Plain values only: they cross process boundaries (directory runs with -j) as they are.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from neuralcodec.format.bitstream import DEFAULT_MAX_PIXELS

DEFAULT_QUALITY = 50.0
PRECISIONS = ("fp32", "fp16")  # of the transforms; the latents' coding is exact integer arithmetic either way


@dataclass(frozen=True)
class EncodeSettings:
    """Everything that decides how an image is encoded, checked once when made (ValueError names the field).

    ``quality``: 0..100, the rate selector of a variable-rate model (ignored by a fixed-rate one); ``weights``:
    a shipped name or a path (default: the flagship); ``device``: auto, cpu or cuda; ``tile``: pixels per tile
    side of the transforms (default 768; bigger is faster on a GPU and costs the decoder memory), recorded in
    the file; ``precision``: fp32 or fp16 transforms (a GPU option; the latents' coding stays exact);
    ``refine``: gradient steps of encoder-side latent refinement (smaller files at the same quality, slower
    encoding; 0: none)."""

    quality: float = DEFAULT_QUALITY
    weights: str | None = None
    device: str = "auto"
    tile: int | None = None
    precision: str = "fp32"
    refine: int = 0

    def __post_init__(self):
        if isinstance(self.quality, bool) or not isinstance(self.quality, numbers.Real) \
                or not 0 <= self.quality <= 100:
            raise ValueError(f"quality must be a number within 0..100, got {self.quality!r}")
        if self.tile is not None and (not isinstance(self.tile, numbers.Integral) or self.tile <= 0):
            raise ValueError(f"tile must be a whole number of pixels, got {self.tile!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if isinstance(self.refine, bool) or not isinstance(self.refine, numbers.Integral) or self.refine < 0:
            raise ValueError(f"refine must be a whole number of steps, 0 or more, got {self.refine!r}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")


@dataclass(frozen=True)
class DecodeSettings:
    """Everything that decides how a file is decoded. ``weights``: None picks the shipped weights whose digest
    the file names; ``perceptual``: their shipped GAN-fine-tuned decoder instead (same latents, sharper
    texture); ``max_pixels``: files describing a bigger image are refused before any work."""

    weights: str | None = None
    device: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    perceptual: bool = False
    precision: str = "fp32"

    def __post_init__(self):
        if self.perceptual and self.weights is not None:
            raise ValueError("perceptual picks the shipped perceptual decoder: give it or weights, not both")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.max_pixels, numbers.Integral) or self.max_pixels <= 0:
            raise ValueError(f"max_pixels must be a positive whole number, got {self.max_pixels!r}")
