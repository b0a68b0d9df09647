"""The transforms run tile by tile: bounded memory for any image size, and a file that records its tiling.

Each tile is ``tile`` x ``tile`` latents of y with ``halo`` latents of context on every side (the model's
receptive field, docs/bitstream.md *Tiling*); equal-sized tiles are batched where a backend asks for it (a
GPU). The backends (torch: ``pipeline.torch_backend``, ONNX Runtime: ``pipeline.onnx_backend``) only run the
networks on windows; the tiles, the image windows and the uint8 output are made here, in numpy, so every backend
cuts and rounds alike. The coding stages see whole latents.
"""

from __future__ import annotations

import numpy as np

from neuralcodec.format.bitstream import MAX_TILE, MAX_WINDOW, MIN_TILE, tile_geometry_error

TILE = 64  # latent rows/columns of y per tile of the transforms (1024 px) by default: ~0.6 GB of activations with
# the flagship's halo of 2 (a window of 68 latents); 8192^2 runs in ~1.6 GB (bench/README.md, "Big images")


def to_uint8(x: np.ndarray) -> np.ndarray:
    """A synthesis output (3,H,W) float in [0, 1] as the HxWx3 uint8 image a decoder writes (NaN from hostile
    latents as 0)."""
    x = np.round(np.clip(np.nan_to_num(x, nan=0.0), 0, 1) * np.float32(255))
    return x.transpose(1, 2, 0).astype(np.uint8)


class TiledTransforms:
    """A model's analysis and synthesis on HxWx3 uint8 images, tile by tile with overlap: the same latents and
    pixels as one pass (up to float rounding), in bounded memory. Subclasses run the networks
    (``_analysis``, ``_upper_levels``, ``_synthesis``) on float32 arrays."""

    backend = "none"
    batch_area = 0  # latents of windows per call: 0 = one tile per call

    def __init__(self, spec):
        self.spec, self.model_id = spec, spec.arch
        self.stride = spec.stride
        self.levels = spec.levels
        # tiles and halos are whole numbers of every level the synthesis reads (coarser levels are cut with y)
        by_name = {lv.name: lv for lv in self.levels}
        self.ratio = max(by_name[n].downsampling for n in spec.synthesis_levels) // self.levels[-1].downsampling
        self.halo = -(-spec.tile_halo // self.ratio) * self.ratio

    def many_images(self) -> None:
        """This process codes more than one image (a directory run, a server): a backend may trade one call's
        memory bound for speed from now on (the ONNX backend keeps its memory arena). Nothing by default."""

    # -- the networks, per backend -----------------------------------------------------------------------
    def _analysis(self, x: np.ndarray, t: float) -> np.ndarray:
        """(n,3,h,w) float32 in [0,1] -> y (n,C,h',w') float32."""
        raise NotImplementedError

    def _upper_levels(self, y: np.ndarray, t: float) -> list[np.ndarray]:
        """y (1,C,H,W) -> the levels above it, coarsest first, (1,C',H',W') float32 each."""
        raise NotImplementedError

    def _synthesis(self, hats: list[np.ndarray], t: float) -> np.ndarray:
        """Windows of the levels the synthesis reads (n,C,h,w) -> (n,3,H,W) float32."""
        raise NotImplementedError

    # -- tiling -------------------------------------------------------------------------------------------
    def window(self, rgb: np.ndarray, rows: slice | None = None, cols: slice | None = None) -> np.ndarray:
        """HxWx3 uint8 -> 3xH'xW' float32 in [0, 1], edge-replicated up to a multiple of the stride; or only
        the window ``rows`` x ``cols`` of that padded image (so big images are never converted whole)."""
        h, w = rgb.shape[:2]
        ph, pw = -(-h // self.stride) * self.stride, -(-w // self.stride) * self.stride
        rows, cols = rows or slice(0, ph), cols or slice(0, pw)
        ri = np.minimum(np.arange(rows.start, rows.stop), h - 1)
        ci = np.minimum(np.arange(cols.start, cols.stop), w - 1)
        window = rgb[ri[:, None], ci[None, :]].transpose(2, 0, 1).astype(np.float32)
        return np.divide(window, np.float32(255), out=window)

    def tile_geometry(self, tile: int | None = None) -> tuple[int, int]:
        """(tile, halo) in latents of y for a requested tile side (default TILE), rounded up to whole latents
        of every level the synthesis reads; the halo is the model's (its receptive field). A requested tile
        must make a geometry files may carry (bitstream.tile_geometry_error)."""
        r = self.ratio
        hi = min(MAX_TILE, MAX_WINDOW - 2 * self.halo) // r * r  # the largest tile this model's halo allows
        if tile is None:  # TILE, or that largest tile for a model with a wide halo (dcuvae's 12: 56)
            return min(-(-TILE // r) * r, hi), self.halo
        tile = -(-tile // r) * r
        error = tile_geometry_error(tile, self.halo)
        if error:
            px = self.levels[-1].downsampling  # pixels per latent of y
            lo = -(-max(MIN_TILE, 2 * self.halo) // r) * r
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

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """Rows and columns of y for an image of ``height`` x ``width`` (padded to the model's stride)."""
        up = self.levels[-1].downsampling  # pixels per latent element of y
        return -(-height // self.stride) * self.stride // up, -(-width // self.stride) * self.stride // up

    def analysis(self, rgb: np.ndarray, t: float, tile: int | None = None) -> np.ndarray:
        """g_a of the padded image, tile by tile with overlap: y (C,H,W) float32, the same as one pass."""
        up = self.levels[-1].downsampling  # pixels per latent element of y
        m = self.levels[-1].channels
        yh, yw = self.latent_size(*rgb.shape[:2])
        y = np.empty((m, yh, yw), np.float32)
        for batch in self._batches(self._tiles(yh, yw, *self.tile_geometry(tile))):
            x = np.stack([self.window(rgb, slice(hr.start * up, hr.stop * up), slice(hc.start * up, hc.stop * up))
                          for _, _, hr, hc in batch])
            yt = self._analysis(x, t)
            for i, (rows, cols, hr, hc) in enumerate(batch):
                y[:, rows, cols] = yt[i, :, rows.start - hr.start:rows.stop - hr.start,
                                      cols.start - hc.start:cols.stop - hc.start]
        return y

    def upper_levels(self, y: np.ndarray, t: float) -> list[np.ndarray]:
        """The levels above y (C,H,W), coarsest first, (C',H',W') float32 each (whole: they are small)."""
        return [u[0] for u in self._upper_levels(y[None], t)] if len(self.levels) > 1 else []

    def synthesis(self, hats: list[np.ndarray], t: float, height: int, width: int,
                  geometry: tuple[int, int] | None = None) -> np.ndarray:
        """g_s tile by tile with overlap, straight into an HxWx3 uint8 image (cropped to height x width).

        ``hats`` (C,h,w) are the levels the synthesis reads, the first at y's resolution; a coarser one is cut
        to the same window (tiles and halos are multiples of every level's resolution ratio)."""
        up = self.levels[-1].downsampling
        ratios = [hats[0].shape[1] // max(1, h.shape[1]) for h in hats]
        out = np.empty((height, width, 3), np.uint8)
        for batch in self._batches(self._tiles(*hats[0].shape[1:], *(geometry or self.tile_geometry()))):
            windows = [np.stack([h[:, hr.start // r:-(-hr.stop // r), hc.start // r:-(-hc.stop // r)]
                                 for _, _, hr, hc in batch]) for h, r in zip(hats, ratios)]
            xs = self._synthesis(windows, t)
            for i, (rows, cols, hr, hc) in enumerate(batch):
                r0, c0 = rows.start * up, cols.start * up
                r1, c1 = min(height, rows.stop * up), min(width, cols.stop * up)
                if r1 > r0 and c1 > c0:
                    x = xs[i, :, (rows.start - hr.start) * up:, (cols.start - hc.start) * up:][:, :r1 - r0, :c1 - c0]
                    out[r0:r1, c0:c1] = to_uint8(x)
        return out
