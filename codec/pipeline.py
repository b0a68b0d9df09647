"""Image <-> latents <-> coded chunks: the model (torch) wired to the entropy coder (numpy).

This is the only module that holds both torch tensors and coded bytes; the model knows nothing of files and
the bitstream nothing of torch. A model's levels (neuralcodec.models.Level) become a chain of coding stages
(neuralcodec.latent_codecs), coded top-down, one chunk each.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from neuralcodec.bitstream import MAX_TILE, MAX_WINDOW, MIN_TILE, FormatError, Header, tile_geometry_error
from neuralcodec.latent_codecs import CheckerboardStage, Decoded, FactorizedStage, GaussianStage
from neuralcodec.rate import t_of_rate
from neuralcodec.models import integer_modules
from neuralcodec.models.integer import IntegerStack
from neuralcodec.weights_io import Weights, WeightsError, build_model

TILE = 48  # latent rows/columns of y per tile of the transforms (768 px) by default: ~0.4 GB of activations
# receptive fields; a model with wider ones says so in `tile_halo`
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


PRECISIONS = ("fp32", "fp16")


class Codec:
    """One loaded model on one device, coding RGB uint8 arrays to chunks and back.

    The transforms run tile by tile (``tile`` x ``tile`` latents of y, each with ``halo`` latents of context on
    every side; recorded in the file), equal-sized tiles batched on a GPU (``batch_area``), in float32
    or, with ``precision="fp16"``, under float16 autocast (a GPU option; the latents' coding stays exact)."""

    def __init__(self, weights: Weights, device: str = "auto", precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.weights = weights
        self.device = pick_device(device)
        self.precision = precision
        # batched tiles on a GPU: windows of up to two of the largest a file may ask for (~1.6 GB of activations)
        self.batch_area = 2 * MAX_WINDOW**2 if self.device.type == "cuda" else 0
        self.model = build_model(weights).to(self.device).requires_grad_(False)  # coding only: no weight gradients
        self.stride = self.model.stride
        self.levels = self.model.levels
        self.tags = [chunk_tag(level.name) for level in self.levels]
        self.stages = [self._stage(level) for level in self.levels]
        # a level is read by the synthesis, or is the context of the level below it
        self._values = [level.name in self.model.synthesis_levels for level in self.levels]
        self._contexts = [i + 1 < len(self.levels) for i in range(len(self.levels))]
        # tiles and halos are whole numbers of every level the synthesis reads (coarser levels are cut with y)
        by_name = {lv.name: lv for lv in self.levels}
        self._ratio = max(by_name[n].downsampling for n in self.model.synthesis_levels) // self.levels[-1].downsampling
        self._halo = -(-self.model.tile_halo // self._ratio) * self._ratio

    def _stage(self, level):
        w = self.weights
        module = getattr(self.model, level.module)
        if level.kind == "factorized":
            return FactorizedStage(w.tables(level.name), module.quantiles[:, 0, 1])
        if level.kind == "categorical":  # integer codes, one table: nothing to centre
            return FactorizedStage(w.tables(level.name), torch.zeros(level.channels))
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

    def _padded(self, rgb: np.ndarray, rows: slice | None = None, cols: slice | None = None) -> torch.Tensor:
        """HxWx3 uint8 -> 1x3xH'xW' float in [0, 1], edge-replicated up to a multiple of the stride; or only
        the window ``rows`` x ``cols`` of that padded image (so big images are never converted whole)."""
        h, w = rgb.shape[:2]
        ph, pw = -(-h // self.stride) * self.stride, -(-w // self.stride) * self.stride
        rows, cols = rows or slice(0, ph), cols or slice(0, pw)
        ri = np.minimum(np.arange(rows.start, rows.stop), h - 1)
        ci = np.minimum(np.arange(cols.start, cols.stop), w - 1)
        window = np.ascontiguousarray(rgb[ri[:, None], ci[None, :]])
        return torch.from_numpy(window).to(self.device).permute(2, 0, 1)[None].float().div_(255)

    # -- tiling -------------------------------------------------------------------------------------------
    def tile_geometry(self, tile: int | None = None) -> tuple[int, int]:
        """(tile, halo) in latents of y for a requested tile side (default TILE), rounded up to whole latents
        of every level the synthesis reads; the halo is the model's (its receptive field). A requested tile
        must make a geometry files may carry (bitstream.tile_geometry_error)."""
        if tile is None:
            return -(-TILE // self._ratio) * self._ratio, self._halo
        tile = -(-tile // self._ratio) * self._ratio
        error = tile_geometry_error(tile, self._halo)
        if error:
            r, px = self._ratio, self.levels[-1].downsampling  # px: pixels per latent of y
            lo = -(-max(MIN_TILE, 2 * self._halo) // r) * r
            hi = min(MAX_TILE, MAX_WINDOW - 2 * self._halo) // r * r
            raise ValueError(f"model {self.model_id!r} cannot use tiles of {tile * px} px ({error}); "
                             f"its tiles are {lo * px}..{hi * px} px")
        return tile, self._halo

    def _geometry_of(self, header: Header) -> tuple[int, int]:
        """The file's tile geometry (version 2 files record none: the default)."""
        return (header.tile, header.halo) if header.tile else self.tile_geometry()

    def _tiles(self, h: int, w: int, tile: int, halo: int):
        """Latent tiles (rows, cols, halo-extended rows, halo-extended cols) covering an h x w latent of y."""
        for r0 in range(0, h, tile):
            for c0 in range(0, w, tile):
                r1, c1 = min(h, r0 + tile), min(w, c0 + tile)
                yield (slice(r0, r1), slice(c0, c1),
                       slice(max(0, r0 - halo), min(h, r1 + halo)), slice(max(0, c0 - halo), min(w, c1 + halo)))

    def _batches(self, tiles):
        """Tiles in groups with equal halo-extended extents, one call each, of at most ``batch_area`` latents
        of windows in all (at least one tile)."""
        groups: dict[tuple[int, int], list] = {}
        for tl in tiles:
            key = (tl[2].stop - tl[2].start, tl[3].stop - tl[3].start)
            groups.setdefault(key, []).append(tl)
            if len(groups[key]) >= max(1, self.batch_area // (key[0] * key[1])):
                yield groups.pop(key)
        yield from groups.values()

    def _autocast(self):
        if self.precision == "fp16":
            return torch.autocast(self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    def analysis(self, rgb: np.ndarray, t: torch.Tensor, tile: int | None = None) -> torch.Tensor:
        """g_a of the padded image, tile by tile with overlap: the same y as one pass, in bounded memory."""
        m, yh, yw = self.latent_shapes(*rgb.shape[:2])[-1]
        up = self.levels[-1].downsampling  # pixels per latent element of y
        y = torch.empty((1, m, yh, yw), device=self.device)
        for batch in self._batches(self._tiles(yh, yw, *self.tile_geometry(tile))):
            x = torch.cat([self._padded(rgb, slice(hr.start * up, hr.stop * up), slice(hc.start * up, hc.stop * up))
                           for _, _, hr, hc in batch])
            with self._autocast():
                yt = self.model.analysis(x, t.expand(len(batch)))
            for i, (rows, cols, hr, hc) in enumerate(batch):
                y[0, :, rows, cols] = yt[i, :, rows.start - hr.start:rows.stop - hr.start,
                                         cols.start - hc.start:cols.stop - hc.start].float()
        return y

    def synthesis(self, hats: list[torch.Tensor], t: torch.Tensor, height: int, width: int,
                  geometry: tuple[int, int] | None = None) -> np.ndarray:
        """g_s tile by tile with overlap, straight into an HxWx3 uint8 image (cropped to height x width).

        ``hats`` are the levels the synthesis reads, the first at y's resolution; a coarser one is cut to the
        same window (tiles and halos are multiples of every level's resolution ratio)."""
        up = self.levels[-1].downsampling
        ratios = [hats[0].shape[2] // max(1, h.shape[2]) for h in hats]
        out = np.empty((height, width, 3), np.uint8)
        for batch in self._batches(self._tiles(*hats[0].shape[2:], *(geometry or self.tile_geometry()))):
            windows = [torch.cat([h[:, :, hr.start // r:-(-hr.stop // r), hc.start // r:-(-hc.stop // r)]
                                  for _, _, hr, hc in batch]) for h, r in zip(hats, ratios)]
            with self._autocast():
                xs = self.model.synthesis(*windows, t.expand(len(batch)))
            for i, (rows, cols, hr, hc) in enumerate(batch):
                x = xs[i, :, (rows.start - hr.start) * up:(rows.stop - hr.start) * up,
                       (cols.start - hc.start) * up:(cols.stop - hc.start) * up]
                r0, c0 = rows.start * up, cols.start * up
                r1, c1 = min(height, rows.stop * up), min(width, cols.stop * up)
                if r1 > r0 and c1 > c0:
                    x = x[:, : r1 - r0, : c1 - c0].float().clamp_(0, 1).mul_(255).round_().to(torch.uint8)
                    out[r0:r1, c0:c1] = x.permute(1, 2, 0).cpu().numpy()
        return out

    @property
    def t_min(self) -> float:
        """The model's rate t at selector 0: t = t_min + (1 - t_min) * rate/65535 (0 unless its weights say)."""
        return self.model.t_min

    def _t(self, rate: int) -> torch.Tensor:
        return torch.tensor([t_of_rate(rate, self.t_min)], device=self.device)

    def _synthesis_inputs(self, decoded: list[Decoded]) -> list[torch.Tensor]:
        by_name = {lv.name: d.value for lv, d in zip(self.levels, decoded)}
        return [by_name[n] for n in self.model.synthesis_levels]

    def quantize(self, y: torch.Tensor, rate: int, values: bool = False) -> list[Decoded]:
        """Every level's symbols, top-down, from the analysis output ``y`` (overwritten: big images)."""
        return self._quantize_levels([*self.model.upper_levels(y, self._t(rate)), y], rate, values)

    def _quantize_levels(self, latents: list[torch.Tensor], rate: int, values: bool = False) -> list[Decoded]:
        """The symbols of the top ``len(latents)`` levels, top-down (each latent overwritten)."""
        decoded, above = [], None
        for i, (stage, x) in enumerate(zip(self.stages, latents)):
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
        y = self.analysis(rgb, t, tile)
        decoded = self._quantize_levels(self.model.upper_levels(y, t), rate)
        idx, mu = self.stages[-1].parameters(decoded[-1], rate)
        return y, decoded, idx, mu

    @torch.inference_mode()
    def refined(self, rgb: np.ndarray, rate: int, steps: int, tile: int | None = None) -> list[Decoded]:
        """Every level's symbols, with the bottom one refined by ``steps`` gradient steps (neuralcodec.refine)
        under the parameters the decoder will derive from the levels above."""
        from neuralcodec.refine import refine

        if not self.refinable:
            raise ValueError(f"model {self.model_id!r} does not support latent refinement")
        t = self._t(rate)
        y, decoded, idx, mu = self.analysis_with_prior(rgb, rate, tile)
        stage = self.stages[-1]
        with torch.inference_mode(False), torch.enable_grad():  # autograd needs tensors made outside it
            t, y = t.clone(), y.clone()  # the clone replaces the analysis output: one latent held
            y = refine(lambda y_hat: self.model.synthesis(y_hat, t), lambda rows, cols: self._padded(rgb, rows, cols),
                       y, torch.from_numpy(mu)[None].to(self.device), torch.from_numpy(idx).to(self.device),
                       torch.from_numpy(stage.scale_table).to(self.device), float(self.model.lmbda(t)), steps,
                       rgb.shape[:2], stride=self.levels[-1].downsampling)
        del mu, idx
        decoded.append(stage.quantize(y, decoded[-1], rate))
        return decoded

    @torch.inference_mode()
    def encode(self, rgb: np.ndarray, rate: int, tile: int | None = None,
               refine: int = 0) -> tuple[dict[bytes, bytes], dict]:
        """Code an HxWx3 uint8 image; returns the chunks and the header's latent shapes and tile geometry.
        ``refine``: gradient steps of encoder-side latent refinement (0: the analysis transform's latents)."""
        y_shape, z_shape = self.header_shapes(*rgb.shape[:2])
        tile, halo = self.tile_geometry(tile)
        if refine:
            decoded = self.refined(rgb, rate, refine, tile)
        else:
            decoded = self.quantize(self.analysis(rgb, self._t(rate), tile), rate)
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
        if header.tile and (header.tile % self._ratio or header.halo % self._ratio or header.halo < self._halo):
            raise FormatError(f"tile geometry {header.tile}/{header.halo} does not fit model {self.model_id!r} "
                              f"(tiles and halos are multiples of {self._ratio}, halos at least {self._halo})")
        if chunks is not None and [t for t in chunks if t != b"ALPH"] != self.tags:
            raise FormatError(f"chunks {[t.decode() for t in chunks]} do not match model {self.model_id!r}")

    @torch.inference_mode()
    def decode_latents(self, header: Header, chunks: dict[bytes, bytes]) -> list[Decoded]:
        """Entropy-decode every level, top-down (symbols, table indexes, decoded values)."""
        self.check(header, chunks)
        decoded, above = [], None
        shapes = self.latent_shapes(header.height, header.width)
        for i, (tag, stage, shape) in enumerate(zip(self.tags, self.stages, shapes)):
            above = stage.decode(chunks[tag], shape, above, header.rate, self.device, value=self._values[i],
                                 context=self._contexts[i])
            decoded.append(above)
        return decoded

    @torch.inference_mode()
    def decode(self, header: Header, chunks: dict[bytes, bytes]) -> np.ndarray:
        decoded = self.decode_latents(header, chunks)
        hats = self._synthesis_inputs(decoded)
        del decoded
        return self.synthesis(hats, self._t(header.rate), header.height, header.width, self._geometry_of(header))

    @torch.inference_mode()
    def reconstruct(self, rgb: np.ndarray, rate: int) -> np.ndarray:
        """The model's own forward output (hard quantization, no bitstream): what decode must reproduce."""
        h, w = rgb.shape[:2]
        t = self._t(rate)
        decoded = self.quantize(self.model.analysis(self._padded(rgb), t), rate, values=True)
        x_hat = self.model.synthesis(*self._synthesis_inputs(decoded), t)  # one pass, untiled: the reference
        return x_hat[0, :, :h, :w].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
