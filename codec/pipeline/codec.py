"""Image <-> latents <-> coded chunks: a model's transforms (a backend) wired to the entropy coder (numpy).

The model knows nothing of files and the bitstream nothing of torch. A model's levels (neuralcodec.models.Level,
read from its ``ModelSpec``) become a chain of coding stages (neuralcodec.coding.stages), coded top-down, one
chunk each; the transforms run tiled on a backend (``pipeline.torch_backend`` or ``pipeline.onnx_backend``).
This module imports no torch: with the ONNX backend a decode never loads it.
"""

from __future__ import annotations

import numpy as np

from neuralcodec.coding.integer import IntegerStack
from neuralcodec.coding.stages import CheckerboardStage, Decoded, FactorizedStage, GaussianStage
from neuralcodec.format.bitstream import ALPHA_TAGS, OLD_MIN_HALO, FormatError, Header, is_ancillary
from neuralcodec.pipeline import deblock as _deblock
from neuralcodec.pipeline.spec import ModelSpec
from neuralcodec.pipeline.tiling import to_uint8
from neuralcodec.rate import t_of_rate
from neuralcodec.zoo.weights_io import Weights, WeightsError

LEGACY_TAGS = {"z": b"ZHYP", "y": b"YLAT"}  # the flagship's chunk tags (format version 2)


def chunk_tag(level_name: str) -> bytes:
    """The chunk tag of a level: ZHYP / YLAT for the flagship's z / y, else the name upper-cased, _-padded."""
    if level_name in LEGACY_TAGS:
        return LEGACY_TAGS[level_name]
    tag = level_name.upper().encode("ascii").ljust(4, b"_")
    if len(tag) != 4:
        raise ValueError(f"level name {level_name!r} is longer than 4 characters")
    return tag


class Codec:
    """One loaded model, coding RGB uint8 arrays to chunks and back: the model's levels become a chain of coding
    stages (one chunk each, top-down); its transforms (``transforms``: a ``TiledTransforms`` of some backend) run
    tiled with the geometry recorded in the file."""

    def __init__(self, weights: Weights, spec: ModelSpec, transforms):
        self.weights, self.spec, self.transforms = weights, spec, transforms
        self.stride = spec.stride
        self.levels = spec.levels
        self.grid = self.levels[-1].downsampling  # pixels per latent of the finest level: the synthesis' grid
        self.deblocks = _deblock.filters(self.grid)  # whether its files ask decoders to filter across that grid
        self.tags = [chunk_tag(level.name) for level in self.levels]
        self.stages = [self._stage(level) for level in self.levels]
        # a level is read by the synthesis, or is the context of the level below it
        self._values = [level.name in spec.synthesis_levels for level in self.levels]
        self._contexts = [i + 1 < len(self.levels) for i in range(len(self.levels))]
        self.images = 0  # images this codec has been asked to code (note_image)

    def _stage(self, level):
        w, spec = self.weights, self.spec
        if level.kind == "factorized":
            return FactorizedStage(w.tables(level.name), np.asarray(spec.medians[level.name], np.float32))
        if level.kind == "categorical":  # integer codes, one table: nothing to centre
            return FactorizedStage(w.tables(level.name), np.zeros(level.channels, np.float32))
        names = [level.module, *(spec.context_modules if level.kind == "checkerboard" else ())]
        try:
            nets = [_prior(spec.integer[n], w.tensors, n) for n in names]
        except (ValueError, KeyError) as e:
            raise WeightsError(f"{w.path}: {e}; re-export the weights") from None
        rate_gain = float(w.tensors["rate_gain"]) if "rate_gain" in w.tensors else None
        if level.kind == "checkerboard":
            return CheckerboardStage(*nets, w.tables("y"), w.tensors["tables.scale_table"], rate_gain, self.t_min)
        return GaussianStage(nets[0], w.tables("y"), w.tensors["tables.scale_table"], rate_gain, self.t_min)

    @property
    def backend(self) -> str:
        return self.transforms.backend

    @property
    def device(self):
        """Where the transforms run (a torch device; "cpu" for the ONNX backend)."""
        return getattr(self.transforms, "device", None) or _CPU

    @property
    def model(self):
        """The torch model (torch backend only)."""
        return self.transforms.model

    @property
    def variable_rate(self) -> bool:
        """Whether the model reads the rate selector (the modulated flagship); others have one rate."""
        return self.spec.variable_rate

    @property
    def model_id(self) -> str:
        return self.weights.arch

    @property
    def t_min(self) -> float:
        """The model's rate t at selector 0: t = t_min + (1 - t_min) * rate/65535 (0 unless its weights say)."""
        return self.spec.t_min

    def t(self, rate: int) -> float:
        return t_of_rate(rate, self.t_min)

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

    def synthesis_inputs(self, decoded: list[Decoded]) -> list[np.ndarray]:
        by_name = {lv.name: d.value for lv, d in zip(self.levels, decoded)}
        return [by_name[n] for n in self.spec.synthesis_levels]

    def quantize(self, y: np.ndarray, rate: int, values: bool = False) -> list[Decoded]:
        """Every level's symbols, top-down, from the analysis output ``y`` (C,H,W) (overwritten: big images)."""
        return self._quantize_levels([*self.transforms.upper_levels(y, self.t(rate)), y], rate, values)

    def _quantize_levels(self, latents: list[np.ndarray], rate: int, values: bool = False) -> list[Decoded]:
        """The symbols of the top ``len(latents)`` levels, top-down (each latent overwritten)."""
        decoded, above = [], None
        for i, (stage, x) in enumerate(zip(self.stages, latents)):
            above = stage.quantize(x, above, rate, value=values and self._values[i], context=self._contexts[i])
            decoded.append(above)
        return decoded

    @property
    def refinable(self) -> bool:
        """Whether encode can refine the latents: the bottom level is a plain Gaussian one the synthesis reads
        (and the backend has gradients: torch)."""
        return (type(self.stages[-1]) is GaussianStage and hasattr(self.transforms, "refine")
                and tuple(self.spec.synthesis_levels) == (self.levels[-1].name,))

    def analysis_with_prior(self, rgb: np.ndarray, rate: int, tile: int | None = None):
        """The analysis output y (C,H,W), the levels above it quantized (top-down), and the table indexes and
        means (C,H,W) that the decoder derives for y from them: y's coding parameters before y is quantized."""
        t = self.t(rate)
        y = self.transforms.analysis(rgb, t, tile)
        decoded = self._quantize_levels(self.transforms.upper_levels(y, t), rate)
        idx, mu = self.stages[-1].parameters(decoded[-1], rate)
        return y, decoded, idx, mu

    def refined(self, rgb: np.ndarray, rate: int, effort: int, tile: int | None = None) -> list[Decoded]:
        """Every level's symbols, with the bottom one refined at ``effort`` (neuralcodec.pipeline.refine.EFFORTS)
        under the parameters the decoder will derive from the levels above."""
        if not self.refinable:
            raise ValueError(f"model {self.model_id!r} does not support latent refinement"
                             + ("" if hasattr(self.transforms, "refine") else f" on the {self.backend} backend"))
        y, decoded, idx, mu = self.analysis_with_prior(rgb, rate, tile)
        stage = self.stages[-1]
        y = self.transforms.refine(rgb, self.t(rate), y, mu, idx, stage.scale_table, effort)
        del mu, idx
        decoded.append(stage.quantize(y, decoded[-1], rate))
        return decoded

    def encode(self, rgb: np.ndarray, rate: int, tile: int | None = None,
               effort: int = 0) -> tuple[dict[bytes, bytes], dict]:
        """Code an HxWx3 uint8 image; returns the chunks and the header's latent shapes and tile geometry.
        ``effort``: 0 (the analysis transform's latents) .. 9: encoder-side latent refinement (refine.EFFORTS)."""
        if self.weights.decoder_only:  # no analysis transforms in the file: nothing to encode with
            from neuralcodec.zoo.catalog import archive_refusal

            raise WeightsError(archive_refusal(self.weights.path.name, "encode"))
        y_shape, z_shape = self.header_shapes(*rgb.shape[:2])
        tile, halo = self.transforms.tile_geometry(tile)
        if max(y_shape[1:]) <= tile and halo < OLD_MIN_HALO and OLD_MIN_HALO % self.transforms.ratio == 0:
            halo = OLD_MIN_HALO  # one tile uses no halo: recording 4 keeps the file readable by decoders before 7
        if effort:
            decoded = self.refined(rgb, rate, effort, tile)
        else:
            decoded = self.quantize(self.transforms.analysis(rgb, self.t(rate), tile), rate)
        chunks = {}
        for tag, stage, d in zip(self.tags, self.stages, decoded):
            chunks[tag] = stage.encode(d)
        return chunks, {"y_shape": y_shape, "z_shape": z_shape, "tile": tile, "halo": halo}

    def check(self, header: Header, chunks: dict[bytes, bytes] | None = None) -> None:
        if header.model_id != self.model_id:
            raise FormatError(f"file was made by model {header.model_id!r}; loaded model is {self.model_id!r}")
        w = self.weights
        decodes = w.decodes_files_of()  # its own, its source's or base's, and same_decoder_as's
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
        if chunks is not None and [t for t in chunks if t not in ALPHA_TAGS and not is_ancillary(t)] != self.tags:
            raise FormatError(f"chunks {[t.decode() for t in chunks]} do not match model {self.model_id!r}")

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

    def note_image(self) -> None:
        """A new image is about to be encoded (once per image, however many qualities a target search tries):
        from a second one on, the transforms may favour speed over one call's memory (``many_images``)."""
        self.images += 1
        if self.images == 2:
            self.transforms.many_images()

    def decode(self, header: Header, chunks: dict[bytes, bytes], deblock: bool = True) -> np.ndarray:
        """The HxWx3 uint8 image a file holds; filtered across the latent grid where the file asks for it
        (its header's ramp and deblocking flags, in that order) unless ``deblock`` is False."""
        decoded = self.decode_latents(header, chunks)
        hats = self.synthesis_inputs(decoded)
        del decoded
        rgb = self.transforms.synthesis(hats, self.t(header.rate), header.height, header.width,
                                        self.geometry_of(header))
        return self.filter(rgb, header) if deblock else rgb

    def filter(self, rgb: np.ndarray, header: Header) -> np.ndarray:
        """The filters across the latent grid that ``header`` asks for (ramp, then deblocking) on the synthesis'
        ``rgb`` in place, on the process's threads; returns it."""
        if header.ramp or header.deblock:
            from neuralcodec.settings import process_threads

            threads = process_threads()
            if header.ramp:
                _deblock.ramp(rgb, self.grid, threads=threads)
            if header.deblock:
                _deblock.deblock(rgb, self.grid, *_deblock.thresholds(header.rate), threads=threads)
        return rgb

    def reconstruct(self, rgb: np.ndarray, rate: int) -> np.ndarray:
        """The model's own forward output (hard quantization, no bitstream, one untiled pass): what decode
        must reproduce."""
        h, w = rgb.shape[:2]
        t, tr = self.t(rate), self.transforms
        decoded = self.quantize(tr._analysis(tr.window(rgb)[None], t)[0], rate, values=True)
        return to_uint8(tr._synthesis([v[None] for v in self.synthesis_inputs(decoded)], t)[0, :, :h, :w])


class _Cpu:
    type = "cpu"

    def __str__(self):
        return "cpu"


_CPU = _Cpu()


def _prior(geometry: list[dict], tensors: dict, name: str):
    """Prior network ``name`` in the arithmetic its weights ship in: the 8-bit layout (``int8.<name>.*``,
    on ONNX Runtime's integer product where installed, else numpy's) or the int16 one (``int.<name>.*``)."""
    eight = f"int8.{name}.{geometry[0]['index']}.weight" in tensors
    if eight and f"int.{name}.{geometry[0]['index']}.weight" in tensors:
        raise ValueError(f"both an 8-bit and a 16-bit {name}")
    if not eight:
        return IntegerStack.from_description(geometry, tensors, f"int.{name}")
    from neuralcodec.coding.integer8 import Int8Stack, ort_matmul
    from neuralcodec.pipeline.onnx_backend import threads

    return Int8Stack.from_description(geometry, tensors, f"int8.{name}", matmul=ort_matmul(threads()))
