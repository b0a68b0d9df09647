"""Networks of neuralcodec, registered by name. Models map tensors to tensors and know nothing of files."""

from __future__ import annotations

ARCHITECTURES = {"modhp": "neuralcodec.models.modulated:ModulatedHyperprior"}


def build(arch: str, **config):
    """Instantiate the registered architecture ``arch`` with its config (imports torch lazily)."""
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    module_name, cls_name = ARCHITECTURES[arch].split(":")
    import importlib

    return getattr(importlib.import_module(module_name), cls_name)(**config)
