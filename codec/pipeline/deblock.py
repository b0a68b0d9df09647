"""Filters across the latent grid: the decoder's last stages, numpy only (docs/bitstream.md).

A learned synthesis draws each latent of y as a 16x16-pixel patch. On smooth content at low rates the patches of
neighbouring latents do not quite meet, and the image shows their grid (issue 19; ``bench/smooth_grid.py``).
Two filters answer it, each where a file's header asks for it, both with integer taps so every decoder writes
the same pixels from the same synthesis output:

- the ramp filter (``ramp``, format version 6), first: where both sides of a boundary are straight ramps over
  the 8 pixels of their half-patch and the step between their lines is small, it spreads the step over those
  16 pixels. A gradient drawn as a staircase of flat patches becomes a gradient again, which no standard
  deblocking filter reaches (their reach is 3 to 6 pixels a side).
- the deblocking filter (``deblock``, format version 5), which borrows block-transform codecs', across every
  boundary of the latent grid, only where the step between the two sides is small (a real edge is left alone):
  smooth on both sides over three pixels and flat over seven: AV1's 14-tap filter (libaom ``filter14``)
  rewrites six pixels each side; smooth over three pixels only: H.264's strong filter (8.7.2.4, bS = 4) rewrites
  three each side; else nothing: texture and noise keep their pixels.

All three channels decide together (no colour shifts), vertical boundaries first, then horizontal ones on the
result (H.264's order). The image is changed in place, band by band: a big image needs no second copy.
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


def quality(rate: int) -> int:
    """The quality -q gave, rounded, from a file's u16 rate selector (rate.quality_of_rate, in integers)."""
    return (rate * 100 + RATE_MAX // 2) // RATE_MAX


def thresholds(rate: int) -> tuple[int, int, int]:
    """(alpha, beta, flat) for a file's u16 rate selector (a fixed-rate model's files have rate 0)."""
    q = quality(rate)
    return next(t for below, t in STRENGTH if q < below)


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


def _across_grid(image: np.ndarray, grid: int, half: int, name: str, run, threads: int = 1) -> np.ndarray:
    """``run(band, cols)`` on ``image`` (H, W, 3) uint8 in place: on the boundaries b = grid, 2 grid, ... (between
    pixel b - 1 and b) with ``half`` pixels on either side, the vertical ones band by band (memory bounded whatever
    the shape), then the horizontal ones on the result, as the same pass on the transposed view. The bands of a
    pass touch disjoint pixels, so up to ``threads`` run at once (numpy lets go of the interpreter in its loops:
    a Kodak image's ramp and deblocking filters 0.71-0.85x the time on two threads,
    bench/experiments/decode_tail.py; the pixels are the same). A grid under 2 ``half`` is left alone. Returns the
    image."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name} takes an HxWx3 uint8 image, got {image.dtype} {image.shape}")
    if grid < 2 * half:
        return image
    h, w = image.shape[:2]
    threads = max(1, int(threads))
    cols, band = np.arange(grid, w - half + 1, grid), max(1, min(BAND_PIXELS // w, -(-h // threads)))
    _bands(run, [(image[r0:r0 + band], cols) for r0 in range(0, h, band)], threads)
    rows, band = np.arange(grid, h - half + 1, grid), max(1, min(BAND_PIXELS // h, -(-w // threads)))
    _bands(run, [(image[:, c0:c0 + band].transpose(1, 0, 2), rows) for c0 in range(0, w, band)], threads)
    return image


def _bands(run, jobs: list, threads: int) -> None:
    if threads < 2 or len(jobs) < 2:
        for band, at in jobs:
            run(band, at)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(threads, len(jobs))) as pool:
        for done in [pool.submit(run, band, at) for band, at in jobs]:
            done.result()  # a band's error raised here


def _pass(band: np.ndarray, cols: np.ndarray, alpha: int, beta: int, flat: int) -> None:
    """Filter the vertical boundaries at ``cols`` of ``band`` (rows, W, 3) uint8 in place."""
    if not cols.size:
        return
    idx = cols[:, None] + np.arange(-HALF, HALF)[None, :]  # (n, 14): p6..p0, q0..q6
    lines = np.take(band, idx, axis=1).astype(np.int16)  # (rows, n, 14, 3); take: half the time of band[:, idx]
    p0, q0 = lines[:, :, HALF - 1:HALF], lines[:, :, HALF:HALF + 1]
    dev = lines.copy()  # each side's pixels against its pixel at the boundary, largest over the channels
    dev[:, :, :HALF] -= p0
    dev[:, :, HALF:] -= q0
    np.abs(dev, out=dev)
    dev = np.maximum(np.maximum(dev[..., 0], dev[..., 1]), dev[..., 2])  # (rows, n, 14)
    step = np.abs(p0 - q0).max(-1)[..., 0]
    near = np.concatenate([dev[:, :, HALF - 3:HALF], dev[:, :, HALF:HALF + 3]], 2).max(-1)  # p2, p1, q1, q2
    strong = (step < alpha) & (near < beta)  # smooth over three pixels
    if not strong.any():
        return
    changed = strong.copy()  # the lines either filter rewrites: the only ones written back
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
    rows, which = np.nonzero(changed)
    band[rows[:, None], idx[which]] = lines[changed].astype(np.uint8)  # weighted means of uint8 values: in [0, 255]


# The ramp filter (format version 6), before the deblocking filter: on smooth content a synthesis at low rates
# draws each patch nearly flat, a staircase on a gradient; spreading the step over the two half-patches turns it
# back into a gradient. RAMP_HALF pixels either side (a whole 16-px patch between two boundaries); the step is
# each side's least-squares line over those pixels, extrapolated to the boundary: D = sum_i (77 - 16 i)(q_i - p_i)
# is 168 times the difference (p_i, q_i: the i-th pixel from the boundary on either side).
RAMP_HALF = 8
RAMP_TAPS = np.array([77 - 16 * i for i in range(RAMP_HALF)], np.int32)  # / 168: the line's value at the boundary
RAMP_DIV = 168
RAMP_BELOW = 65  # qualities below it are ramp-filtered: above, the grid is faint (bench/README.md, "Deblocking")
RAMP_STEP, RAMP_CHORD = 8, 3  # grey levels: the largest step taken for an artefact, and the largest distance of
# any pixel of a side from the chord between its first and last (a side must be a straight ramp, texture is kept)


def ramp_wanted(grid: int, rate: int, height: int, width: int) -> bool:
    """Whether an encoder asks for the ramp filter (the header's ramp flag): a grid it can filter (16 pixels or
    more), an image with a boundary to filter, and a quality below RAMP_BELOW (u16 rate selector; a fixed-rate
    model's 0 is quality 0)."""
    return grid >= 2 * RAMP_HALF and max(height, width) >= grid + RAMP_HALF and quality(rate) < RAMP_BELOW


def _ramp_tests() -> np.ndarray:
    """(48, 3 + 36) float32: a line's 16 pixels x 3 channels (p7..p0, q0..q7; pixel-major) to, per channel, D and
    the twelve chord deviations 7 s_i - (7 s_0 + i (s_7 - s_0)) of either side (i = 1..6). All integers under
    2^17 in magnitude: one float32 matrix product computes them exactly."""
    m = np.zeros((2 * RAMP_HALF, 3, 3 + 36), np.float32)
    last = RAMP_HALF - 1
    for c in range(3):
        for i in range(RAMP_HALF):  # D = sum_i taps_i (q_i - p_i)
            m[RAMP_HALF + i, c, c] += RAMP_TAPS[i]
            m[RAMP_HALF - 1 - i, c, c] -= RAMP_TAPS[i]
        for side, pos in enumerate((lambda i: RAMP_HALF - 1 - i, lambda i: RAMP_HALF + i)):
            for i in range(1, last):
                col = 3 + (side * 3 + c) * (last - 1) + i - 1
                m[pos(i), c, col] += last
                m[pos(0), c, col] -= last - i
                m[pos(last), c, col] -= i
    return m.reshape(2 * RAMP_HALF * 3, -1)


RAMP_TESTS = _ramp_tests()
RAMP_TAPER = (2 * RAMP_HALF - 1 - 2 * np.arange(RAMP_HALF, dtype=np.int64))[None, :, None]  # 15 - 2i


def _ramp_pass(band: np.ndarray, cols: np.ndarray, step: int, chord: int) -> None:
    """Spread the steps at the vertical boundaries ``cols`` of ``band`` (rows, W, 3) uint8, in place."""
    if not cols.size:
        return
    idx = cols[:, None] + np.arange(-RAMP_HALF, RAMP_HALF)[None, :]  # (n, 16): p7..p0, q0..q7
    lines = np.take(band, idx, axis=1)  # (rows, n, 16, 3)
    t = lines.reshape(-1, RAMP_TESTS.shape[0]).astype(np.float32) @ RAMP_TESTS  # (rows * n, 39), exact
    np.abs(t, out=t)
    ok = (t[:, 3:].max(-1) < (RAMP_HALF - 1) * chord) & (np.maximum(np.maximum(t[:, 0], t[:, 1]), t[:, 2]) <
                                                          RAMP_DIV * step)
    if not ok.any():
        return
    ok = ok.reshape(lines.shape[:2])
    picked = lines[ok]  # (k, 16, 3)
    d = (picked.reshape(-1, RAMP_TESTS.shape[0]).astype(np.float32) @ RAMP_TESTS[:, :3]).astype(np.int64)[:, None]
    # (k, 1, 3): 168 x the step, with its sign (t holds magnitudes)
    corr = (d * RAMP_TAPER + RAMP_DIV * 16) // (RAMP_DIV * 32)  # (k, 8, 3): d (7.5 - i) / 16, rounded
    corr = corr.astype(np.int32)
    sel = picked.astype(np.int32)
    sel[:, RAMP_HALF - 1::-1] += corr
    sel[:, RAMP_HALF:] -= corr
    rows, which = np.nonzero(ok)
    band[rows[:, None], idx[which]] = np.clip(sel, 0, 255).astype(np.uint8)


def ramp(image: np.ndarray, grid: int = 16, step: int = RAMP_STEP, chord: int = RAMP_CHORD,
         threads: int = 1) -> np.ndarray:
    """The ramp filter on ``image`` (H, W, 3) uint8 in place across the ``grid``-pixel latent grid (vertical
    boundaries, then horizontal ones on the result), on up to ``threads`` threads; returns it. A grid under 16
    pixels is left alone."""
    return _across_grid(image, grid, RAMP_HALF, "ramp", lambda band, cols: _ramp_pass(band, cols, step, chord),
                        threads)


def deblock(image: np.ndarray, grid: int = 16, alpha: int = ALPHA, beta: int = BETA, flat: int = FLAT,
            threads: int = 1) -> np.ndarray:
    """Filter ``image`` (H, W, 3) uint8 in place across the ``grid``-pixel latent grid, on up to ``threads``
    threads; returns it. A grid under 14 pixels (the wide filter's reach) is left alone."""
    return _across_grid(image, grid, HALF, "deblock", lambda band, cols: _pass(band, cols, alpha, beta, flat),
                        threads)
