"""A deblocking filter across the latent grid: the decoder's last stage, numpy only (docs/bitstream.md).

A learned synthesis draws each latent of y as a 16x16-pixel patch. On smooth content at low rates the patches of
neighbouring latents do not quite meet, and the image shows their grid (issue 19; ``bench/smooth_grid.py``).
Block-transform codecs answer the same artefact with a deblocking filter; this one borrows theirs and runs in
the decoder's output, across every boundary of the latent grid, where a file's header asks for it (format
version 5), and only where the step between the two sides is small (a real edge is left alone):

- smooth on both sides over three pixels and flat over seven: AV1's 14-tap filter (libaom ``filter14``) rewrites
  six pixels each side;
- smooth over three pixels only: H.264's strong filter (8.7.2.4, bS = 4) rewrites three each side;
- else nothing: texture and noise keep their pixels.

All three channels decide together (no colour shifts), vertical boundaries first, then horizontal ones on the
result (H.264's order). Integer taps, rounded as AV1 does, so every decoder writes the same pixels from the
same synthesis output. The image is changed in place, band by band: a big image needs no second copy.
"""

from __future__ import annotations

import numpy as np

from neuralcodec.rate import RATE_MAX

# thresholds (grey levels) by rate: alpha, the largest step across a boundary taken for an artefact; beta, the
# largest change within three pixels of either side for the strong (6-pixel) filter; flat, the largest change within
# seven pixels of either side for the wide (12-pixel) filter. Milder at high rates, where the grid is faint and
# fine texture is kept (tuned on training photos, bench/deblock.py): (quality below, (alpha, beta, flat)),
# quality = (rate selector * 100 + 32767) div 65535 (format version 5).
STRENGTH = ((65, (8, 4, 8)), (80, (8, 3, 6)), (92, (8, 3, 4)), (101, (8, 2, 3)))
ALPHA, BETA, FLAT = STRENGTH[0][1]


def thresholds(rate: int) -> tuple[int, int, int]:
    """(alpha, beta, flat) for a file's u16 rate selector (a fixed-rate model's files have rate 0)."""
    quality = (rate * 100 + RATE_MAX // 2) // RATE_MAX  # rounded: the quality -q gave (rate.quality_of_rate)
    return next(t for below, t in STRENGTH if quality < below)


BAND_PIXELS = 1 << 18  # pixels per band of a pass: ~14 * 3 * 4 bytes per line, a few times over (tens of MB)
HALF = 7  # pixels read on either side of a boundary (p6..p0 | q0..q6)


def _weights(rows: dict[int, list[int]]) -> np.ndarray:
    """(14, 14) int32 taps: output pixel i = sum_j w[i, j] * window[j] (then rounded off by the filter's shift)
    for the p side's rows given (taps from p6), the q side's mirrored, the identity (times the divisor) elsewhere.
    Window index: p6..p0 = 0..6, q0..q6 = 7..13."""
    divisor = sum(next(iter(rows.values())))
    w = np.eye(2 * HALF, dtype=np.int32) * divisor
    for i, taps in rows.items():
        if sum(taps) != divisor:
            raise ValueError("taps must sum to the divisor")
        row = np.zeros(2 * HALF, np.int32)
        row[: len(taps)] = taps
        w[i], w[2 * HALF - 1 - i] = row, row[::-1]
    return w


# H.264's strong filter (8.7.2.4, bS = 4): p2..q2 from p3..q3, in eighths
STRONG, STRONG_SHIFT = _weights({
    4: [0, 0, 0, 2, 3, 1, 1, 1],  # p2 = (2 p3 + 3 p2 + p1 + p0 + q0) / 8
    5: [0, 0, 0, 0, 2, 2, 2, 2],  # p1 = (p2 + p1 + p0 + q0) / 4
    6: [0, 0, 0, 0, 1, 2, 2, 2, 1],  # p0 = (p2 + 2 p1 + 2 p0 + 2 q0 + q1) / 8
}), 3
# AV1's 14-tap filter for flat runs (libaom filter14): p5..q5 from p6..q6, in sixteenths
WIDE, WIDE_SHIFT = _weights({
    1: [7, 2, 2, 1, 1, 1, 1, 1],
    2: [5, 2, 2, 2, 1, 1, 1, 1, 1],
    3: [4, 1, 2, 2, 2, 1, 1, 1, 1, 1],
    4: [3, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1],
    5: [2, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1],
    6: [1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1],
}), 4


def filters(grid: int) -> bool:
    """Whether a synthesis grid of ``grid`` pixels is filtered: the wide filter reaches 7 pixels each side."""
    return grid >= 2 * HALF


def _boundaries(size: int, grid: int) -> np.ndarray:
    """Positions b of the grid boundaries (between pixel b - 1 and b) with HALF pixels on either side."""
    return np.arange(grid, size - HALF + 1, grid) if filters(grid) else np.zeros(0, np.int64)


def _pass(band: np.ndarray, cols: np.ndarray, alpha: int, beta: int, flat: int) -> None:
    """Filter the vertical boundaries at ``cols`` of ``band`` (rows, W, 3) uint8 in place."""
    if not cols.size:
        return
    idx = cols[:, None] + np.arange(-HALF, HALF)[None, :]  # (n, 14): p6..p0, q0..q6
    lines = band[:, idx].astype(np.int32)  # (rows, n, 14, 3)
    p0, q0 = lines[:, :, HALF - 1:HALF], lines[:, :, HALF:HALF + 1]
    dev = np.abs(np.concatenate([lines[:, :, :HALF] - p0, lines[:, :, HALF:] - q0], 2)).max(-1)  # (rows, n, 14)
    step = np.abs(p0 - q0).max(-1)[..., 0]
    near = np.concatenate([dev[:, :, HALF - 3:HALF], dev[:, :, HALF:HALF + 3]], 2).max(-1)  # p2, p1, q1, q2
    strong = (step < alpha) & (near < beta)  # smooth over three pixels
    wide = strong & (dev.max(-1) < flat)  # and flat over seven (as AV1, the wide filter needs the narrow test too)
    strong &= ~wide
    for mask, w, shift in ((wide, WIDE, WIDE_SHIFT), (strong, STRONG, STRONG_SHIFT)):
        if mask.any():  # integer taps, rounded as AV1 does: (sum + 2^(shift-1)) >> shift. The sums are integers
            # under 2^12, exact in float32 whatever the order, so one float32 matrix product computes them exactly
            sel = lines[mask]  # (k, 14, 3)
            k = sel.shape[0]
            sums = w.astype(np.float32) @ sel.transpose(1, 0, 2).reshape(2 * HALF, 3 * k).astype(np.float32)
            out = np.floor((sums + (1 << (shift - 1))) * (1.0 / (1 << shift))).astype(np.int32)
            lines[mask] = out.reshape(2 * HALF, k, 3).transpose(1, 0, 2)
    band[:, idx] = lines.astype(np.uint8)  # weighted means of uint8 values: within [0, 255]


def deblock(image: np.ndarray, grid: int = 16, alpha: int = ALPHA, beta: int = BETA, flat: int = FLAT) -> np.ndarray:
    """Filter ``image`` (H, W, 3) uint8 in place across the ``grid``-pixel latent grid; returns it. A grid under
    14 pixels (the wide filter's reach) is left alone."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"deblock takes an HxWx3 uint8 image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    cols, band = _boundaries(w, grid), max(1, BAND_PIXELS // w)
    for r0 in range(0, h, band):  # vertical boundaries, band by band (memory bounded whatever the shape)
        _pass(image[r0:r0 + band], cols, alpha, beta, flat)
    rows, band = _boundaries(h, grid), max(1, BAND_PIXELS // h)
    for c0 in range(0, w, band):  # horizontal boundaries: the same pass on the transposed view
        _pass(image[:, c0:c0 + band].transpose(1, 0, 2), rows, alpha, beta, flat)
    return image
