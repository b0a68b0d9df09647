"""Image <-> latents <-> coded chunks: the model (torch) wired to the entropy coder (numpy).

This is the only module that holds both torch tensors and coded bytes; the model knows nothing of files and
the bitstream nothing of torch. A model's levels (neuralcodec.models.Level) become a chain of coding stages
(neuralcodec.coding.stages), coded top-down, one chunk each.
"""

from __future__ import annotations

import numpy as np
import torch

from neuralcodec.format.bitstream import FormatError, Header
from neuralcodec.coding.stages import CheckerboardStage, Decoded, FactorizedStage, GaussianStage
from neuralcodec.rate import t_of_rate
from neuralcodec.models import integer_modules
from neuralcodec.coding.integer import IntegerStack
from neuralcodec.pipeline.tiling import TiledTransforms
from neuralcodec.zoo.weights_io import Weights, WeightsError, build_model

LEGACY_TAGS = {"z": b"ZHYP", "y": b"YLAT"}  # the flagship's chunk tags (format version 2)


def chunk_tag(level_name: str) -> bytes:
    """The chunk tag of a level: ZHYP / YLAT for the flagship's z / y, else the name upper-cased, _-padded."""
    if level_name in LEGACY_TAGS:
        return LEGACY_TAGS[level_name]
    tag = level_name.upper().encode("ascii").ljust(4, b"_")
    if len(tag) != 4:
        raise ValueError(f"level name {level_name!r} is longer than 4 characters")
    return tag


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for, but no CUDA device is available")
    return torch.device(device)



class Codec:
    """One loaded model on one device, coding RGB uint8 arrays to chunks and back: the model's levels become a
    chain of coding stages (one chunk each, top-down); its transforms run tiled (``transforms``,
    neuralcodec.pipeline.tiling) with the geometry recorded in the file."""

    def __init__(self, weights: Weights, device: str = "auto", precision: str = "fp32"):
        self.weights = weights
        self.device = pick_device(device)
        self.model = build_model(weights).to(self.device).requires_grad_(False)  # coding only: no weight gradients
        self.transforms = TiledTransforms(self.model, self.device, precision, weights.arch)
        self.stride = self.model.stride
        self.levels = self.model.levels
        self.tags = [chunk_tag(level.name) for level in self.levels]
        self.stages = [self._stage(level) for level in self.levels]
        # a level is read by the synthesis, or is the context of the level below it
        self._values = [level.name in self.model.synthesis_levels for level in self.levels]
        self._contexts = [i + 1 < len(self.levels) for i in range(len(self.levels))]

    def _stage(self, level):
        w = self.weights
        module = getattr(self.model, level.module)
        if level.kind == "factorized":
            return FactorizedStage(w.tables(level.name), module.quantiles[:, 0, 1].detach().float().cpu().numpy())
        if level.kind == "categorical":  # integer codes, one table: nothing to centre
            return FactorizedStage(w.tables(level.name), np.zeros(level.channels, np.float32))
        names = integer_modules(self.model, level)
        try:
            nets = [IntegerStack.from_tensors(getattr(self.model, n), w.tensors, f"int.{n}") for n in names]
        except ValueError as e:
            raise WeightsError(f"{w.path}: {e}; re-export the weights") from None
        rate_gain = float(w.tensors["rate_gain"]) if "rate_gain" in w.tensors else None
        if level.kind == "checkerboard":
            return CheckerboardStage(*nets, w.tables("y"), w.tensors["tables.scale_table"], rate_gain, self.t_min)
        return GaussianStage(nets[0], w.tables("y"), w.tensors["tables.scale_table"], rate_gain, self.t_min)

    @property
    def variable_rate(self) -> bool:
        """Whether the model reads the rate selector (the modulated flagship); others have one rate."""
        return self.model.variable_rate

    @property
    def model_id(self) -> str:
        return self.weights.arch

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """(C, H, W) of each level, top-down, for an image of ``height`` x ``width``."""
        ph, pw = -(-height // self.stride) * self.stride, -(-width // self.stride) * self.stride
        return [(lv.channels, ph // lv.downsampling, pw // lv.downsampling) for lv in self.levels]

    def header_shapes(self, height: int, width: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """The header's two shape fields: the bottom level (y) and the one above it (zeros if none)."""
        shapes = self.latent_shapes(height, width)
        return shapes[-1], shapes[-2] if len(shapes) > 1 else (0, 0, 0)

    def geometry_of(self, header: Header) -> tuple[int, int]:
        """The file's tile geometry (version 2 files record none: the default)."""
        return (header.tile, header.halo) if header.tile else self.transforms.tile_geometry()

    @property
    def t_min(self) -> float:
        """The model's rate t at selector 0: t = t_min + (1 - t_min) * rate/65535 (0 unless its weights say)."""
        return self.model.t_min

    def _t(self, rate: int) -> torch.Tensor:
        return torch.tensor([t_of_rate(rate, self.t_min)], device=self.device)

    def _synthesis_inputs(self, decoded: list[Decoded]) -> list[torch.Tensor]:
        by_name = {lv.name: d.value for lv, d in zip(self.levels, decoded)}
        return [torch.from_numpy(by_name[n]).to(self.device)[None] for n in self.model.synthesis_levels]

    def quantize(self, y: torch.Tensor, rate: int, values: bool = False) -> list[Decoded]:
        """Every level's symbols, top-down, from the analysis output ``y`` (overwritten: big images)."""
        return self._quantize_levels([*self.model.upper_levels(y, self._t(rate)), y], rate, values)

    def _quantize_levels(self, latents: list[torch.Tensor], rate: int, values: bool = False) -> list[Decoded]:
        """The symbols of the top ``len(latents)`` levels, top-down (each latent overwritten)."""
        decoded, above = [], None
        for i, (stage, x) in enumerate(zip(self.stages, latents)):
            x = x[0].float().cpu().numpy()  # a CPU latent is shared, not copied: the stage overwrites it
            above = stage.quantize(x, above, rate, value=values and self._values[i], context=self._contexts[i])
            decoded.append(above)
        return decoded

    @property
    def refinable(self) -> bool:
        """Whether encode can refine the latents: the bottom level is a plain Gaussian one the synthesis reads."""
        return (type(self.stages[-1]) is GaussianStage
                and tuple(self.model.synthesis_levels) == (self.levels[-1].name,))

    @torch.inference_mode()
    def analysis_with_prior(self, rgb: np.ndarray, rate: int, tile: int | None = None):
        """The analysis output y (1,C,H,W), the levels above it quantized (top-down), and the table indexes and
        means (C,H,W) that the decoder derives for y from them: y's coding parameters before y is quantized."""
        t = self._t(rate)
        y = self.transforms.analysis(rgb, t, tile)
        decoded = self._quantize_levels(self.model.upper_levels(y, t), rate)
        idx, mu = self.stages[-1].parameters(decoded[-1], rate)
        return y, decoded, idx, mu

    @torch.inference_mode()
    def refined(self, rgb: np.ndarray, rate: int, steps: int, tile: int | None = None) -> list[Decoded]:
        """Every level's symbols, with the bottom one refined by ``steps`` gradient steps (neuralcodec.pipeline.refine)
        under the parameters the decoder will derive from the levels above."""
        from neuralcodec.pipeline.refine import refine

        if not self.refinable:
            raise ValueError(f"model {self.model_id!r} does not support latent refinement")
        t = self._t(rate)
        y, decoded, idx, mu = self.analysis_with_prior(rgb, rate, tile)
        stage = self.stages[-1]
        with torch.inference_mode(False), torch.enable_grad():  # autograd needs tensors made outside it
            t, y = t.clone(), y.clone()  # the clone replaces the analysis output: one latent held
            y = refine(lambda y_hat: self.model.synthesis(y_hat, t),
                       lambda rows, cols: self.transforms.padded(rgb, rows, cols),
                       y, torch.from_numpy(mu)[None].to(self.device), torch.from_numpy(idx).to(self.device),
                       torch.from_numpy(stage.scale_table).to(self.device), float(self.model.lmbda(t)), steps,
                       rgb.shape[:2], stride=self.levels[-1].downsampling)
        del mu, idx
        decoded.append(stage.quantize(y.detach()[0].cpu().numpy(), decoded[-1], rate))
        return decoded

    @torch.inference_mode()
    def encode(self, rgb: np.ndarray, rate: int, tile: int | None = None,
               refine: int = 0) -> tuple[dict[bytes, bytes], dict]:
        """Code an HxWx3 uint8 image; returns the chunks and the header's latent shapes and tile geometry.
        ``refine``: gradient steps of encoder-side latent refinement (0: the analysis transform's latents)."""
        y_shape, z_shape = self.header_shapes(*rgb.shape[:2])
        tile, halo = self.transforms.tile_geometry(tile)
        if refine:
            decoded = self.refined(rgb, rate, refine, tile)
        else:
            decoded = self.quantize(self.transforms.analysis(rgb, self._t(rate), tile), rate)
        chunks = {}
        for tag, stage, d in zip(self.tags, self.stages, decoded):
            chunks[tag] = stage.encode(d)
        return chunks, {"y_shape": y_shape, "z_shape": z_shape, "tile": tile, "halo": halo}

    def check(self, header: Header, chunks: dict[bytes, bytes] | None = None) -> None:
        if header.model_id != self.model_id:
            raise FormatError(f"file was made by model {header.model_id!r}; loaded model is {self.model_id!r}")
        w = self.weights
        decodes = (w.decodes,) if w.decoder_only else (w.digest, w.decodes)  # an archive: only its source's files
        if header.weights_digest not in decodes:
            raise FormatError(f"file was made with weights {header.weights_digest.hex()[:16]}; loaded weights "
                              f"{w.path.name} decode {decodes[0].hex()[:16]}")
        y_shape, z_shape = self.header_shapes(header.height, header.width)
        if tuple(header.y_shape) != y_shape or tuple(header.z_shape) != z_shape:
            raise FormatError(f"latent shapes {header.y_shape}/{header.z_shape} do not fit a "
                              f"{header.width}x{header.height} image")
        ratio, halo = self.transforms.ratio, self.transforms.halo
        if header.tile and (header.tile % ratio or header.halo % ratio or header.halo < halo):
            raise FormatError(f"tile geometry {header.tile}/{header.halo} does not fit model {self.model_id!r} "
                              f"(tiles and halos are multiples of {ratio}, halos at least {halo})")
        if chunks is not None and [t for t in chunks if t != b"ALPH"] != self.tags:
            raise FormatError(f"chunks {[t.decode() for t in chunks]} do not match model {self.model_id!r}")

    @torch.inference_mode()
    def decode_latents(self, header: Header, chunks: dict[bytes, bytes]) -> list[Decoded]:
        """Entropy-decode every level, top-down (symbols, table indexes, decoded values)."""
        self.check(header, chunks)
        decoded, above = [], None
        shapes = self.latent_shapes(header.height, header.width)
        for i, (tag, stage, shape) in enumerate(zip(self.tags, self.stages, shapes)):
            above = stage.decode(chunks[tag], shape, above, header.rate, value=self._values[i],
                                 context=self._contexts[i])
            decoded.append(above)
        return decoded

    @torch.inference_mode()
    def decode(self, header: Header, chunks: dict[bytes, bytes]) -> np.ndarray:
        decoded = self.decode_latents(header, chunks)
        hats = self._synthesis_inputs(decoded)
        del decoded
        return self.transforms.synthesis(hats, self._t(header.rate), header.height, header.width,
                                         self.geometry_of(header))

    @torch.inference_mode()
    def reconstruct(self, rgb: np.ndarray, rate: int) -> np.ndarray:
        """The model's own forward output (hard quantization, no bitstream): what decode must reproduce."""
        h, w = rgb.shape[:2]
        t = self._t(rate)
        decoded = self.quantize(self.model.analysis(self.transforms.padded(rgb), t), rate, values=True)
        x_hat = self.model.synthesis(*self._synthesis_inputs(decoded), t)  # one pass, untiled: the reference
        return x_hat[0, :, :h, :w].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
