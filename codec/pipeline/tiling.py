"""The transforms run tile by tile: bounded memory for any image size, and a file that records its tiling.

Each tile is ``tile`` x ``tile`` latents of y with ``halo`` latents of context on every side (the model's
receptive field, docs/bitstream.md *Tiling*); equal-sized tiles are batched on a GPU (``batch_area``); float32
or, with ``precision="fp16"``, float16 autocast (a GPU option). Coding knows nothing of tiles: it sees whole
latents.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from neuralcodec.format.bitstream import MAX_TILE, MAX_WINDOW, MIN_TILE, tile_geometry_error
from neuralcodec.settings import PRECISIONS

TILE = 48  # latent rows/columns of y per tile of the transforms (768 px) by default: ~0.4 GB of activations


class TiledTransforms:
    """A model's analysis and synthesis on HxWx3 uint8 images, tile by tile with overlap: the same latents and
    pixels as one pass (up to float rounding), in bounded memory."""

    def __init__(self, model, device: torch.device, precision: str = "fp32", name: str = "model"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.model, self.device, self.precision, self.model_id = model, device, precision, name
        self.stride = model.stride
        self.levels = model.levels
        # batched tiles on a GPU: windows of up to two of the largest a file may ask for (~1.6 GB of activations)
        self.batch_area = 2 * MAX_WINDOW**2 if device.type == "cuda" else 0
        # tiles and halos are whole numbers of every level the synthesis reads (coarser levels are cut with y)
        by_name = {lv.name: lv for lv in self.levels}
        self.ratio = max(by_name[n].downsampling for n in model.synthesis_levels) // self.levels[-1].downsampling
        self.halo = -(-model.tile_halo // self.ratio) * self.ratio

    def padded(self, rgb: np.ndarray, rows: slice | None = None, cols: slice | None = None) -> torch.Tensor:
        """HxWx3 uint8 -> 1x3xH'xW' float in [0, 1], edge-replicated up to a multiple of the stride; or only
        the window ``rows`` x ``cols`` of that padded image (so big images are never converted whole)."""
        h, w = rgb.shape[:2]
        ph, pw = -(-h // self.stride) * self.stride, -(-w // self.stride) * self.stride
        rows, cols = rows or slice(0, ph), cols or slice(0, pw)
        ri = np.minimum(np.arange(rows.start, rows.stop), h - 1)
        ci = np.minimum(np.arange(cols.start, cols.stop), w - 1)
        window = np.ascontiguousarray(rgb[ri[:, None], ci[None, :]])
        return torch.from_numpy(window).to(self.device).permute(2, 0, 1)[None].float().div_(255)

    def tile_geometry(self, tile: int | None = None) -> tuple[int, int]:
        """(tile, halo) in latents of y for a requested tile side (default TILE), rounded up to whole latents
        of every level the synthesis reads; the halo is the model's (its receptive field). A requested tile
        must make a geometry files may carry (bitstream.tile_geometry_error)."""
        if tile is None:
            return -(-TILE // self.ratio) * self.ratio, self.halo
        tile = -(-tile // self.ratio) * self.ratio
        error = tile_geometry_error(tile, self.halo)
        if error:
            r, px = self.ratio, self.levels[-1].downsampling  # px: pixels per latent of y
            lo = -(-max(MIN_TILE, 2 * self.halo) // r) * r
            hi = min(MAX_TILE, MAX_WINDOW - 2 * self.halo) // r * r
            raise ValueError(f"model {self.model_id!r} cannot use tiles of {tile * px} px ({error}); "
                             f"its tiles are {lo * px}..{hi * px} px")
        return tile, self.halo

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
        up = self.levels[-1].downsampling  # pixels per latent element of y
        m = self.levels[-1].channels
        yh, yw = (-(-n // self.stride) * self.stride // up for n in rgb.shape[:2])
        y = torch.empty((1, m, yh, yw), device=self.device)
        for batch in self._batches(self._tiles(yh, yw, *self.tile_geometry(tile))):
            x = torch.cat([self.padded(rgb, slice(hr.start * up, hr.stop * up), slice(hc.start * up, hc.stop * up))
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
