"""What the codec needs to know of a model, as plain values: its levels, which of them the synthesis reads, its
stride and receptive field, its rate range, the medians of its factorized levels and the geometry of its integer
prior networks. Read from a torch model (``ModelSpec.of``) or from JSON (the ONNX runtime's bundle), so the
coding chain is built the same way with or without torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from neuralcodec.models import Level


@dataclass(frozen=True)
class ModelSpec:
    arch: str
    levels: tuple[Level, ...]
    synthesis_levels: tuple[str, ...]
    stride: int
    tile_halo: int
    t_min: float
    variable_rate: bool
    medians: dict[str, list[float]] = field(default_factory=dict)  # factorized level -> per-channel medians
    integer: dict[str, list[dict]] = field(default_factory=dict)  # prior module -> IntegerStack.description()
    context_modules: tuple[str, ...] = ()
    top_from: float | None = None  # rates t >= top_from have an analysis of their own (models/modulated.py)

    @classmethod
    def of(cls, model, arch: str) -> "ModelSpec":
        """The spec of a torch model (a ``CodecModel``) with loaded weights."""
        from neuralcodec.coding.integer import IntegerStack
        from neuralcodec.models import integer_modules

        medians, integer = {}, {}
        for level in model.levels:
            if level.kind == "factorized":
                module = getattr(model, level.module)
                medians[level.name] = module.quantiles[:, 0, 1].detach().float().cpu().tolist()
            for name in integer_modules(model, level):
                geo = IntegerStack.geometry(getattr(model, name))
                integer[name] = [{k: v for k, v in g.items() if k != "module"} for g in geo]
        return cls(arch, tuple(model.levels), tuple(model.synthesis_levels), int(model.stride), int(model.tile_halo),
                   float(model.t_min), bool(model.variable_rate), medians, integer, tuple(model.context_modules),
                   getattr(model, "top_from", None))

    def band(self, t: float) -> int:
        """Which analysis encodes rate ``t``: 1 (the top one) from ``top_from`` on, else 0; compared in float32,
        as the model compares (``ModulatedHyperprior.band``)."""
        return int(self.top_from is not None and np.float32(t) >= np.float32(self.top_from))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        d = json.loads(text)
        d["levels"] = tuple(Level(**lv) for lv in d["levels"])
        for k in ("synthesis_levels", "context_modules"):
            d[k] = tuple(d[k])
        return cls(**d)
