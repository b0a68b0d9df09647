"""Networks of neuralcodec, registered by name. Models map tensors to tensors and know nothing of files.

Every model describes its latents as a chain of :class:`Level` s, top (coarsest, coded first) to bottom (the
analysis output y). The codec (neuralcodec.pipeline.codec) composes one coding stage per level from that
description; the model itself only provides the transforms:

- ``analysis(x, t) -> y`` and ``upper_levels(y, t) -> [coarsest, ..., the level above y]``;
- ``synthesis(*hats, t) -> x_hat`` where ``hats`` are the decoded levels named by ``synthesis_levels``;
- one module per level: an entropy bottleneck (``factorized``: per-channel tables) or a prior network that
  maps the decoded level above to (scales, means) of a Gaussian (``gaussian``).
"""

from __future__ import annotations

from dataclasses import dataclass

ARCHITECTURES = {
    "modhp": "neuralcodec.models.modulated:ModulatedHyperprior",
    "modhpc": "neuralcodec.models.checkerboard:CheckerboardHyperprior",
    "resgdn": "neuralcodec.models.seeds:ResidualAttentionAutoencoder",
    "lighthp": "neuralcodec.models.seeds:LightHyperprior",
    "dcuvae": "neuralcodec.models.seeds:DilatedUNetVAE",
    "hvae": "neuralcodec.models.seeds:HierarchicalVAE",
    "betavae": "neuralcodec.models.seeds:BetaVAE",
    "vqvae": "neuralcodec.models.seeds:VQVAE",
}
# the architectures whose output follows the rate selector (their classes' ``variable_rate``; tested), known
# without importing torch: the command line says when -q has no effect
VARIABLE_RATE = frozenset({"modhp", "modhpc"})


@dataclass(frozen=True)
class Level:
    """One coded latent: its name, how it is coded, the module that models it, its channels and its
    down-sampling factor relative to the (padded) image."""

    name: str
    kind: str  # "factorized" (per-channel tables over round(v - median)), "gaussian" (prior network),
    # "checkerboard" (gaussian, in two passes with a spatial context: the model's ``context_modules``) or
    # "categorical" (one learned table over integer codes 0..K-1, e.g. codebook indices)
    module: str  # attribute of the model: an entropy bottleneck, or the prior network of a gaussian level
    channels: int
    downsampling: int


def integer_modules(model, level: Level) -> list[str]:
    """Modules of ``level`` that ship as integer networks: a Gaussian level's prior, plus a checkerboard level's
    context networks (the model's ``context_modules``); none for the others."""
    if level.kind not in ("gaussian", "checkerboard"):
        return []
    return [level.module, *(model.context_modules if level.kind == "checkerboard" else ())]


def architecture(arch: str):
    """The class registered as ``arch`` (imports torch lazily)."""
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    module_name, cls_name = ARCHITECTURES[arch].split(":")
    import importlib

    return getattr(importlib.import_module(module_name), cls_name)


def build(arch: str, **config):
    """Instantiate the registered architecture ``arch`` with its config."""
    return architecture(arch)(**config)
