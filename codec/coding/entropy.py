"""Entropy coding of integer latents with constriction's range coder. Numpy only: no torch here.

Every distribution is an integer count table (shipped with the weights), selected by an integer index, so the
encoder and decoder build bit-identical models. Each table covers a finite support and ends with one escape
symbol; a value outside the support is coded as the escape followed by the value itself (zig-zag, two 16-bit
uniform halves), so any int32 latent round-trips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import constriction

from neuralcodec.errors import NeuralcodecError

_Categorical = constriction.stream.model.Categorical
_HALF = constriction.stream.model.Uniform(1 << 16)
_ESCAPE_COUNT = 1
TABLE_PRECISION = 16  # counts of each table sum to about 2**16


class EntropyError(NeuralcodecError, ValueError):
    """A coded stream does not decode under the given tables (corrupt or foreign data)."""


@dataclass(frozen=True)
class CountTables:
    """K integer count tables: ``counts[k, :lengths[k]]`` over symbols ``offsets[k] + j``; escape is implicit."""

    counts: np.ndarray  # (K, L) int32, zero-padded
    lengths: np.ndarray  # (K,) int32
    offsets: np.ndarray  # (K,) int32, the smallest in-support value of each table

    def __post_init__(self):
        if not (self.counts.ndim == 2 and self.lengths.shape == self.offsets.shape == (self.counts.shape[0],)):
            raise ValueError("inconsistent count tables")
        if (self.lengths < 1).any() or (self.lengths > self.counts.shape[1]).any():
            raise ValueError("count-table lengths out of range")

    def __len__(self) -> int:
        return self.counts.shape[0]

    def model(self, k: int):
        n = int(self.lengths[k])
        probs = np.empty(n + 1, np.float64)
        probs[:n] = self.counts[k, :n]
        probs[n] = _ESCAPE_COUNT
        return _Categorical(probs, perfect=False)


def gaussian_tables(scale_table: np.ndarray, tail: float = 1e-9) -> CountTables:
    """Count tables of the zero-mean Gaussian quantized to integers, one per scale of ``scale_table``."""
    from math import erfc, sqrt

    def cdf(v: float, s: float) -> float:
        return 0.5 * erfc(-v / (s * sqrt(2.0)))

    # support ±ceil(s * Phi^-1(1 - tail/2)); 6.109 is that quantile for tail = 1e-9
    half_widths = [int(np.ceil(s * 6.109410204869)) for s in scale_table]
    width = 2 * max(half_widths) + 1
    counts = np.zeros((len(scale_table), width), np.int32)
    for k, (s, h) in enumerate(zip(scale_table, half_widths)):
        v = np.arange(-h, h + 1)
        p = np.array([cdf(x + 0.5, s) - cdf(x - 0.5, s) for x in v])
        counts[k, : 2 * h + 1] = np.maximum(1, np.round(p * (1 << TABLE_PRECISION))).astype(np.int32)
    return CountTables(counts, np.array([2 * h + 1 for h in half_widths], np.int32),
                       np.array([-h for h in half_widths], np.int32))


def pmf_tables(pmfs: np.ndarray, lengths: np.ndarray, offsets: np.ndarray) -> CountTables:
    """Count tables from float probability tables (one row per table, zero padded)."""
    counts = np.maximum(1, np.round(pmfs * (1 << TABLE_PRECISION))).astype(np.int32)
    counts[np.arange(counts.shape[1])[None, :] >= lengths[:, None]] = 0
    return CountTables(counts, lengths.astype(np.int32), offsets.astype(np.int32))


def _zigzag(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.int64)
    return np.where(v >= 0, 2 * v, -2 * v - 1).astype(np.uint64)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    u = u.astype(np.int64)
    return np.where(u % 2 == 0, u // 2, -(u + 1) // 2)


_CHUNK = 1 << 20


def _table_counts(indexes: np.ndarray, n_tables: int) -> np.ndarray:
    """How many symbols use each table; in chunks, so a huge uint8 index array is never widened whole."""
    counts = np.zeros(n_tables, np.int64)
    for i in range(0, indexes.size, _CHUNK):
        counts += np.bincount(indexes[i:i + _CHUNK], minlength=n_tables)[:n_tables]
    return counts


def _flat_indexes(indexes: np.ndarray, n_tables: int, error) -> np.ndarray:
    flat = np.asarray(indexes).ravel()
    if flat.dtype.kind not in "iu":
        raise error("table indexes must be integers")
    if flat.size and (flat.min() < 0 or flat.max() >= n_tables):
        raise error("table index out of range")
    return flat


def encode(values: np.ndarray, indexes: np.ndarray, tables: CountTables) -> bytes:
    """Range-code int ``values`` where ``indexes`` (same shape) picks each value's table.

    Order in the stream: the values of table 0 in raster order, then table 1, ...; then the escaped values.
    Memory stays near the inputs' own size (int32 values, uint8 indexes: a 50 M-symbol latent is fine).
    """
    values = np.asarray(values).ravel()
    if values.dtype.kind not in "iu":
        raise ValueError("latent values must be integers")
    if values.dtype.kind == "u":
        values = values.astype(np.int64)
    flat = _flat_indexes(indexes, len(tables), ValueError)
    if values.shape != flat.shape:
        raise ValueError("values and indexes differ in shape")
    if values.size and (int(values.min()) <= -(1 << 31) or int(values.max()) >= 1 << 31):
        raise ValueError("latent value out of int32 range")
    enc = constriction.stream.queue.RangeEncoder()
    escaped = []
    for k in np.flatnonzero(_table_counts(flat, len(tables))):
        sym = values[flat == k]  # a copy: turned into this table's symbols in place
        lo, n = int(tables.offsets[k]), int(tables.lengths[k])
        out = (sym < lo) | (sym >= lo + n)
        escaped.append(sym[out])
        sym[out] = lo + n  # the escape; set before subtracting, so values near 2^31 cannot overflow
        sym -= lo
        enc.encode(sym.astype(np.int32, copy=False), tables.model(int(k)))
    esc = _zigzag(np.concatenate(escaped)) if escaped else np.zeros(0, np.uint64)
    if esc.size:
        halves = np.stack([esc >> np.uint64(16), esc & np.uint64(0xFFFF)], 1).ravel().astype(np.int32)
        enc.encode(halves, _HALF)
    return enc.get_compressed().astype("<u4").tobytes()


def decode(data: bytes, indexes: np.ndarray, tables: CountTables) -> np.ndarray:
    """Inverse of :func:`encode`: int32 values of the shape of ``indexes``."""
    if len(data) % 4:
        raise EntropyError("coded stream length is not a multiple of 4")
    flat = _flat_indexes(indexes, len(tables), EntropyError)
    words = np.frombuffer(data, "<u4").astype(np.uint32)
    values = np.empty(flat.size, np.int32)
    try:
        dec = constriction.stream.queue.RangeDecoder(words)
        escapes = []
        for k, count in enumerate(_table_counts(flat, len(tables))):
            if not count:
                continue
            mask = flat == k
            sym = dec.decode(tables.model(int(k)), int(count)).astype(np.int32, copy=False)
            is_escape = sym == int(tables.lengths[k])
            if is_escape.any():
                escapes.append(np.flatnonzero(mask)[is_escape])
            sym += np.int32(tables.offsets[k])
            values[mask] = sym
        esc_pos = np.concatenate(escapes) if escapes else np.zeros(0, np.int64)
        halves = dec.decode(_HALF, 2 * esc_pos.size).astype(np.uint64).reshape(-1, 2)
    except (ValueError, RuntimeError, OverflowError, AssertionError) as e:  # how constriction reports corrupt data
        raise EntropyError(f"corrupt coded stream: {e}") from None
    if esc_pos.size:
        esc = _unzigzag((halves[:, 0] << np.uint64(16)) | halves[:, 1])
        if np.abs(esc).max() >= 1 << 31:
            raise EntropyError("decoded latent out of int32 range")
        values[esc_pos] = esc
    return values.reshape(np.shape(indexes))
