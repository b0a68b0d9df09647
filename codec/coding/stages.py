"""Coding stages, one per latent level, composed top-down into a model's coding chain.

After compressai's ``latent_codecs``: a stage turns one float latent into integer symbols and a coded stream,
and back, given what the level above decoded. Everything that chooses a probability table, and every mean, is
exact integer arithmetic (codec/coding/integer.py), so a file decodes to the same latents on every device.
Stages see numpy arrays only (float32 latents (C,H,W) in, integer symbols out): no torch, whichever backend runs
the transforms.

- :class:`FactorizedStage`: per-channel count tables over v = round(x - median_c) (compressai's
  EntropyBottleneck, shipped as tables). A top level.
- :class:`GaussianStage`: v = round(x - mu) under a zero-mean quantized Gaussian whose table index and mean
  mu come from an integer prior network of the decoded level above, optionally scaled by a rate gain.
- :class:`CheckerboardStage`: a Gaussian level coded in two passes, anchors under the prior alone, then the
  other half with a correction from a context network of the decoded anchors.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from neuralcodec.coding import entropy
from neuralcodec.coding.integer import ACT_BITS, ACT_LIMIT, CONTEXT_LIMIT, IntegerStack
from neuralcodec.rate import GAIN_BITS, gain_fixed


@dataclass
class Decoded:
    """A level as the decoder knows it: integer symbols (C,H,W), and what the levels below and the synthesis
    need of it. ``fixed`` is the decoded latent in fixed point (2^ACT_BITS), exact, for a prior below."""

    symbols: np.ndarray
    indexes: np.ndarray | None = None  # table index of each symbol (gaussian levels)
    value: np.ndarray | None = None  # the decoded latent (C,H,W) float32: what the synthesis reads
    fixed: np.ndarray | None = None


def _context(symbols: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Fixed-point input of a prior network: clamp(v) * 2^ACT_BITS + offset (offset: median or mean)."""
    return (np.clip(symbols.astype(np.int64), -CONTEXT_LIMIT, CONTEXT_LIMIT) << ACT_BITS) + offsets


class FactorizedStage:
    """A level coded under one count table per channel, as v = round(x - median)."""

    def __init__(self, tables: entropy.CountTables, medians: np.ndarray):
        self.tables = tables
        self.medians = np.asarray(medians, np.float32).reshape(-1, 1, 1)
        self.offsets = np.round(self.medians.astype(np.float64) * 2**ACT_BITS).astype(np.int64)

    def _channels(self, shape) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[0], dtype=np.int64)[:, None, None], shape)

    def quantize(self, x: np.ndarray, above: Decoded | None, rate: int, value: bool = False,
                 context: bool = False) -> Decoded:
        """Symbols of ``x`` (C,H,W); with ``value`` the decoded latent too, with ``context`` its fixed point."""
        sym = np.round(np.asarray(x, np.float32) - self.medians).astype(np.int64)
        return self._decoded(sym, value, context)

    def encode(self, d: Decoded) -> bytes:
        return entropy.encode(d.symbols, self._channels(d.symbols.shape), self.tables)

    def decode(self, data: bytes, shape: tuple[int, int, int], above: Decoded | None, rate: int,
               value: bool = True, context: bool = False) -> Decoded:
        sym = entropy.decode(data, self._channels(shape), self.tables).astype(np.int64)
        return self._decoded(sym, value, context)

    def _decoded(self, sym: np.ndarray, value: bool, context: bool) -> Decoded:
        d = Decoded(sym, fixed=_context(sym, self.offsets) if context else None)
        if value:
            d.value = sym.astype(np.float32) + self.medians
        return d


class GaussianStage:
    """A level coded as v = round(x - mu) under zero-mean Gaussian tables; an integer prior network maps the
    level above to S (scales) and U (means), both multiplied by the rate gain G (docs/bitstream.md)."""

    def __init__(self, prior: IntegerStack, tables: entropy.CountTables, scale_table: np.ndarray,
                 rate_gain: float | None, t_min: float = 0.0):
        self.prior = prior
        self.tables = tables
        self.scale_table = np.asarray(scale_table, np.float32)  # the Gaussian scale of each table index
        self.rate_gain, self.t_min = rate_gain, t_min
        unit = 2.0 ** (ACT_BITS + GAIN_BITS)  # k = number of scale-table boundaries below S*G, in fixed point
        self.thresholds = np.array([math.floor(float(b) * unit) for b in scale_table[:-1]], np.int64)

    def table_parameters(self, out: np.ndarray, g: int) -> tuple[np.ndarray, np.ndarray]:
        """Table indexes (uint8) and means (float32) from a prior's output (S, U) and the fixed-point gain."""
        m = out.shape[0] // 2
        scales, means = out[:m], out[m:]
        idx = np.searchsorted(self.thresholds, scales * g, side="left").astype(np.uint8)
        mu = ((means * g).astype(np.float64) * 2.0 ** -(ACT_BITS + GAIN_BITS)).astype(np.float32)  # exact: < 2^53
        return idx, mu

    def parameter_bands(self, above: Decoded, rate: int, fixed_means: bool = False):
        """Yield (first row, end row, table indexes uint8 (C,rows,W), means float32 (C,rows,W)) band by band,
        bit-exact everywhere; with ``fixed_means``, the means as int64 at 2^ACT_BITS as well."""
        g = gain_fixed(self.rate_gain, rate, self.t_min)
        for r0, r1, out in self.prior.bands(above.fixed):
            idx, mu = self.table_parameters(out, g)
            if fixed_means:
                yield r0, r1, idx, mu, (out[out.shape[0] // 2:] * g) >> GAIN_BITS
            else:
                yield r0, r1, idx, mu

    def parameters(self, above: Decoded, rate: int) -> tuple[np.ndarray, np.ndarray]:
        """Table indexes (uint8 C,H,W) and means (float32 C,H,W) of the whole level."""
        bands = list(self.parameter_bands(above, rate))
        return np.concatenate([b[2] for b in bands], 1), np.concatenate([b[3] for b in bands], 1)

    def _fixed(self, shape, context: bool) -> np.ndarray | None:
        if context and self.rate_gain is not None:
            raise ValueError("a rate-modulated level cannot be the context of another level")
        return np.empty(shape, np.int64) if context else None

    def quantize(self, x: np.ndarray, above: Decoded, rate: int, value: bool = False,
                 context: bool = False) -> Decoded:
        """Symbols round(x - mu); ``x`` (C,H,W) float32 is overwritten with them, band by band (big images)."""
        if x.dtype != np.float32:
            raise TypeError(f"latents are float32, got {x.dtype}")
        idx = np.empty(x.shape, np.uint8)
        means = np.empty(x.shape, np.float32) if value else None
        fixed = self._fixed(x.shape, context)
        for r0, r1, idx_band, mu_band, *fixed_band in self.parameter_bands(above, rate, fixed is not None):
            idx[:, r0:r1] = idx_band
            band = x[:, r0:r1]
            np.subtract(band, mu_band, out=band)
            np.round(band, out=band)
            if value:
                means[:, r0:r1] = mu_band
            if fixed is not None:
                fixed[:, r0:r1] = fixed_band[0]
        if x.size and max(-x.min(), x.max()) >= 1 << 31:
            raise ValueError("latent value out of int32 range")
        return self._decoded(x.astype(np.int32), idx, means, fixed)

    def encode(self, d: Decoded) -> bytes:
        return entropy.encode(d.symbols, d.indexes, self.tables)

    def decode(self, data: bytes, shape: tuple[int, int, int], above: Decoded, rate: int,
               value: bool = True, context: bool = False) -> Decoded:
        fixed = self._fixed(shape, context)
        idx = np.empty(shape, np.uint8)
        means = np.empty(shape, np.float32) if value else None
        for r0, r1, idx_band, mu_band, *fixed_band in self.parameter_bands(above, rate, fixed is not None):
            idx[:, r0:r1] = idx_band
            if value:
                means[:, r0:r1] = mu_band
            if fixed is not None:
                fixed[:, r0:r1] = fixed_band[0]
        sym = entropy.decode(data, idx, self.tables)
        return self._decoded(sym, idx, means, fixed)

    def _decoded(self, sym, idx, means, fixed) -> Decoded:
        d = Decoded(sym, idx)
        if means is not None:  # in place: float32(v) + mu, in float32 (as every backend adds them)
            means += sym.astype(np.float32)
            d.value = means
        if fixed is not None:  # a prior below reads this level: v * 2^ACT_BITS + mu, exactly
            d.fixed = _context(sym, fixed)
        return d


def anchors(h: int, w: int) -> np.ndarray:
    """(h, w) bool: the checkerboard's anchor positions, (row + column) even."""
    return (np.arange(h)[:, None] + np.arange(w)[None, :]) % 2 == 0


class CheckerboardStage(GaussianStage):
    """A Gaussian level in two passes (docs/bitstream.md, *Checkerboard context*): anchors under the prior's
    (S, U); then non-anchors under (S, U) + params(cat((S, U), context(anchors))), where ``context`` reads the
    anchors' coded residuals v divided by the rate gain. One chunk: u32 length of the anchors' stream, the anchors'
    stream, the non-anchors' stream."""

    def __init__(self, prior: IntegerStack, context: IntegerStack, params: IntegerStack, tables: entropy.CountTables,
                 scale_table: np.ndarray, rate_gain: float | None, t_min: float = 0.0):
        super().__init__(prior, tables, scale_table, rate_gain, t_min)
        self.context, self.params = context, params

    def parameter_bands(self, *a, **k):
        raise NotImplementedError("a checkerboard level's non-anchor parameters depend on its decoded anchors")

    parameters = parameter_bands

    def _bands(self, above: Decoded, anchors_in: np.ndarray | None):
        """(first row, end row, prior output) band by band; with ``anchors_in`` (the context input, zero off
        the anchors) the non-anchors' corrected output instead."""
        for r0, r1, out in self.prior.bands(above.fixed):
            if anchors_in is not None:
                a0, a1 = max(0, r0 - 2), min(anchors_in.shape[1], r1 + 2)  # the 5x5 context's halo
                ctx = self.context(anchors_in[:, a0:a1])[:, r0 - a0:r1 - a0]
                out = out + self.params(np.concatenate([out, ctx]))
            yield r0, r1, out

    def _context_input(self, sym: np.ndarray, g: int) -> np.ndarray:
        """Anchor residuals divided by the gain, at 2^ACT_BITS: round(v * 2^32 / G), v clamped like any context."""
        v = np.clip(sym.astype(np.int64), -CONTEXT_LIMIT, CONTEXT_LIMIT) << (ACT_BITS + GAIN_BITS)
        return np.clip((v + g // 2) // g, -ACT_LIMIT, ACT_LIMIT)

    def _code(self, shape, above: Decoded, rate: int, take):
        """Both passes; ``take(first, idx, mu)`` returns the symbols (C, n) of the anchors (``first``) or the
        non-anchors, given their table indexes and means (C, n)."""
        _, h, w = shape
        g = gain_fixed(self.rate_gain, rate, self.t_min)
        mask = anchors(h, w)
        idx = np.empty(shape, np.uint8)
        means = np.empty(shape, np.float32)
        sym = np.empty(shape, np.int32)
        anchors_in = np.zeros(shape, np.int32)  # |values| <= 2^23
        for first in (True, False):
            for r0, r1, out in self._bands(above, None if first else anchors_in):
                m = mask[r0:r1] if first else ~mask[r0:r1]
                i, mu = self.table_parameters(out, g)
                idx[:, r0:r1][:, m], means[:, r0:r1][:, m] = i[:, m], mu[:, m]
            where = mask if first else ~mask
            sym[:, where] = take(first, idx[:, where], means[:, where])
            if first:
                anchors_in[:, mask] = self._context_input(sym[:, mask], g)
        return sym, idx, means

    def quantize(self, x: np.ndarray, above: Decoded, rate: int, value: bool = False,
                 context: bool = False) -> Decoded:
        if context:
            raise ValueError("a checkerboard level cannot be the context of another level")
        y = np.asarray(x, np.float32)
        mask = anchors(*y.shape[1:])

        def take(first, idx, mu):
            v = np.round(y[:, mask if first else ~mask] - mu)
            if v.size and np.abs(v).max() >= 1 << 31:
                raise ValueError("latent value out of int32 range")
            return v.astype(np.int32)

        sym, idx, means = self._code(y.shape, above, rate, take)
        return self._decoded(sym, idx, means if value else None, None)

    def encode(self, d: Decoded) -> bytes:
        mask = anchors(*d.symbols.shape[1:])
        first = entropy.encode(d.symbols[:, mask], d.indexes[:, mask], self.tables)
        return struct.pack("<I", len(first)) + first + entropy.encode(d.symbols[:, ~mask], d.indexes[:, ~mask],
                                                                       self.tables)

    def decode(self, data: bytes, shape: tuple[int, int, int], above: Decoded, rate: int,
               value: bool = True, context: bool = False) -> Decoded:
        if context:
            raise ValueError("a checkerboard level cannot be the context of another level")
        n = struct.unpack_from("<I", data)[0] if len(data) >= 4 else None
        if n is None or n > len(data) - 4:
            raise entropy.EntropyError("checkerboard chunk: the anchors' stream runs past the end")
        streams = {True: data[4:4 + n], False: data[4 + n:]}

        def take(first, idx, mu):
            return entropy.decode(streams[first], idx, self.tables)

        sym, idx, means = self._code(shape, above, rate, take)
        return self._decoded(sym, idx, means if value else None, None)
