"""What every neuralcodec model provides: the interface the codec, the weights I/O and training rely on.

Like CompressAI's ``CompressionModel``: a base class that says, member by member, what a model provides, with
the defaults a simple model needs. Models map tensors to tensors and know nothing of files or entropy coders.
"""

from __future__ import annotations

import torch
from torch import nn

from neuralcodec.models import Level

DEFAULT_TILE_HALO = 4  # latent rows/columns a tile borrows from its neighbours, unless a model says less


class CodecModel(nn.Module):
    """Base class of every registered model.

    Subclasses set ``levels`` in ``__init__`` and implement the transforms; the class attributes below are
    defaults that a subclass overrides where it differs.
    """

    #: total down-sampling of the coarsest latent: inputs are padded to a multiple of this
    stride: int = 16
    #: the coded latents, top (coarsest, coded first) to bottom (the analysis output y); set in ``__init__``
    levels: tuple[Level, ...] = ()
    #: the levels the synthesis reads, in the order of its arguments
    synthesis_levels: tuple[str, ...] = ("y",)
    #: parameter-name prefixes a decoder-only fine-tune may change (e.g. ``--perceptual`` decoders)
    synthesis_modules: tuple[str, ...] = ("g_s.",)
    #: parameter-name prefixes only an encoder needs (a decoder-only archive drops them)
    analysis_modules: tuple[str, ...] = ()
    #: state-dict prefixes of training-only state (compressai's entropy models), never in coding models
    training_only: tuple[str, ...] = ()
    #: extra integer networks of a checkerboard level besides its prior (see ``models.integer_modules``)
    context_modules: tuple[str, ...] = ()
    #: latent rows/columns of context the tiled transforms need on each side of a tile
    tile_halo: int = DEFAULT_TILE_HALO
    #: the rate selector's lower end: t runs over [t_min, 1] (0 for models without an extended range)
    t_min: float = 0.0
    #: whether the rate t changes the model's output (a variable-rate model), or it has one rate
    variable_rate: bool = False
    #: the largest lambda the model trains for (normalizes the per-sample loss weights)
    lmbda_max: float

    def lmbda(self, t: torch.Tensor) -> torch.Tensor:
        """The rate-distortion trade-off lambda at rate ``t`` (shape B)."""
        raise NotImplementedError

    def analysis(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The image (B,3,H,W in [0,1]) to y at rate ``t``."""
        raise NotImplementedError

    def upper_levels(self, y: torch.Tensor, t: torch.Tensor) -> list[torch.Tensor]:
        """The latents above y, coarsest first (none for a model with one level)."""
        return []

    def synthesis(self, *hats: torch.Tensor) -> torch.Tensor:
        """The decoded levels named by ``synthesis_levels``, then ``t``, to the image."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict:
        """Training pass: ``x_hat``, ``likelihoods`` per level, optionally ``extra_loss``."""
        raise NotImplementedError

    def aux_loss(self) -> torch.Tensor:
        """The entropy models' auxiliary loss (compressai's quantile fit); trained by its own optimizer."""
        return torch.zeros(())

    def config(self) -> dict:
        """Keyword arguments that rebuild this model (stored in weights files)."""
        raise NotImplementedError

    def fast_parameters(self) -> list[str]:
        """Names of the few rate-control parameters that train at a higher learning rate (none by default)."""
        return []

    def rate_gain_value(self) -> float | None:
        """The learned rate gain of a variable-rate model, for training logs; None for others."""
        return None

    def grown_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This model's parameters grown function-preservingly from a narrower model's ``state``; models that
        cannot grow raise ValueError."""
        raise ValueError(f"{type(self).__name__} cannot be grown from a narrower model")
