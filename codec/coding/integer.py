"""Integer networks: a conv stack evaluated exactly, so every device computes the same integers.

After Ballé, Johnston and Minnen, "Integer networks for data compression with latent-variable models"
(ICLR 2019). Anything that selects a probability table for the range coder must be identical in encoder and
decoder; floating-point convolutions are not (other CPU, GPU, thread count or library version sum in another
order). Here weights, biases and activations are integers with fixed binary points, every rounding is
defined, and the only arithmetic is integer multiply-add. It runs on float64 tensors holding integers whose
every partial sum stays below 2^53, so any summation order gives the exact result: BLAS, threads and
banding cannot change a bit. Evaluation is numpy only (no torch: the decoder runs without it); the geometry of a
stack comes from its float twin (``geometry``, any torch-like Sequential) or from a plain description.

Fixed-point layout (docs/bitstream.md, "Integer hyper-synthesis"):
- activations: integers a with value a / 2^ACT_BITS, saturated to [-ACT_LIMIT, ACT_LIMIT];
- weights of output channel c: integers w with value w / 2^shift[c], |w| < 2^WEIGHT_BITS;
- a layer: acc = conv(a, w) + bias (bias at scale 2^(shift[c] + ACT_BITS)),
  a' = floor((acc + 2^(shift[c]-1)) / 2^shift[c]), saturated; then, where the float net has a leaky ReLU,
  a'' = a' if a' >= 0 else floor(a' * LEAK_NUM / 2^LEAK_SHIFT).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

ACT_BITS = 16
ACT_LIMIT = 2**23
CONTEXT_LIMIT = 1 << 9  # symbols are clamped to +-512 before they enter a prior network (docs/bitstream.md)
WEIGHT_BITS = 15  # |weight| < 2^15: shipped as int16
MAX_SHIFT = 24
LEAK_NUM, LEAK_SHIFT = 5243, 19  # leaky ReLU slope 5243/2^19 = 0.0100002 (torch: 0.01)
EXACT = 2**53  # float64 represents every integer below this exactly
BAND_POSITIONS = 1 << 14  # output positions per band: bench/experiments/prior_bands.py (1 << 13: 5% slower per Mpx, 8192 wide)


def float_parameters(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The float weights and biases an integer stack stands for (``<name>.weight`` = weight / 2^shift).

    Shipped weights hold the hyper-synthesis only in integer form; training resumes from these values.
    """
    out = {}
    for name in tensors:
        if name.startswith(prefix + ".") and name.endswith(".shift"):
            base = name[: -len(".shift")]
            scale = 2.0 ** tensors[name].astype(np.float64)
            float_name = base.removeprefix("int.")  # integer tensors are named "int." + the float name
            out[float_name + ".weight"] = (tensors[base + ".weight"] / scale).astype(np.float32)
            out[float_name + ".bias"] = (tensors[base + ".bias"] / (scale.reshape(-1) * 2**ACT_BITS)).astype(np.float32)
    return out


@dataclass
class IntLayer:
    index: int  # position in the float Sequential: tensors are named after it
    transposed: bool
    stride: int
    padding: int
    output_padding: int
    leaky: bool  # a leaky ReLU follows
    weight: np.ndarray  # int16 (|w| < 2^15), torch layout
    bias: np.ndarray  # int64, one per output channel
    shift: np.ndarray  # int32, one per output channel
    _kernels: tuple | None = field(default=None, init=False, repr=False, compare=False)  # (weight, kernels)

    def kernels(self) -> list[tuple[int, int, int, int, np.ndarray]]:
        """The weights as the matrix products read them, made once: a convolution's (O, C*k*k) and, for a
        transposed one, per output phase (row, column) the flipped taps that reach it, (O, C*taps) contiguous,
        with the input offset of its first tap: [(phase row, phase column, row offset, column offset, matrix)].
        Kept as int16: a product converts a contiguous copy to float64 (a strided, transposing float64 copy of
        every phase cost ~40 ms per Kodak image)."""
        w = self.weight
        if self._kernels is None or self._kernels[0] is not w:  # made for these weights (not a replaced array)
            if not self.transposed:
                self._kernels = (w, [(0, 0, 0, 0, w.reshape(w.shape[0], -1))])
            else:
                k, s = w.shape[2], self.stride
                flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (O, C, k, k): the equivalent stride-1 kernel
                pad = k - 1 - self.padding
                out = []
                for fr in range(s):
                    kr0 = (pad - fr) % s
                    for fc in range(s):
                        kc0 = (pad - fc) % s
                        sub = np.ascontiguousarray(flipped[:, :, kr0::s, kc0::s])
                        out.append((fr, fc, (fr + kr0 - pad) // s, (fc + kc0 - pad) // s, sub))
                self._kernels = (w, out)
        return self._kernels[1]

    def out_channels(self) -> int:
        return self.weight.shape[1] if self.transposed else self.weight.shape[0]

    def fan_in(self) -> int:
        w = self.weight
        return w.shape[0] * w.shape[2] * w.shape[3] if self.transposed else w[0].size


class IntegerStack:
    """A chain of (transposed) convolutions with optional leaky ReLUs, evaluated in exact integers."""

    band_positions = BAND_POSITIONS  # output positions per band (``bands``)

    def __init__(self, layers: list[IntLayer]):
        self.layers = layers
        for i, layer in enumerate(layers):
            b = layer.bias  # Python ints: np.abs of int64's minimum overflows to itself
            bound = layer.fan_in() * 2**WEIGHT_BITS * ACT_LIMIT + max(-int(b.min(initial=0)), int(b.max(initial=0)))
            w = layer.weight
            if bound >= EXACT or max(-int(w.min(initial=0)), int(w.max(initial=0))) >= 2**WEIGHT_BITS:
                raise ValueError(f"integer layer {i}: sums may reach {bound:.3g}, beyond exact float64")
            if not (0 <= layer.shift.min() and layer.shift.max() <= MAX_SHIFT):
                raise ValueError(f"integer layer {i}: shift outside 0..{MAX_SHIFT}")

    # -- building -----------------------------------------------------------------------------------------
    @staticmethod
    def geometry(module) -> list[dict]:
        """Layer geometry of a float Sequential of Conv2d/ConvTranspose2d/LeakyReLU (torch's, read by name: this
        module never imports torch)."""
        geo = []
        for i, m in enumerate(module):
            kind = type(m).__name__
            if kind in ("Conv2d", "ConvTranspose2d"):
                geo.append({"index": i, "transposed": kind == "ConvTranspose2d", "stride": m.stride[0],
                            "padding": m.padding[0],
                            "output_padding": m.output_padding[0] if kind == "ConvTranspose2d" else 0,
                            "leaky": False, "module": m})
            elif kind == "LeakyReLU":
                geo[-1]["leaky"] = True
            else:
                raise TypeError(f"{kind} has no integer form")
        return geo

    def description(self) -> list[dict]:
        """The geometry as plain values (JSON): with the shipped integers, all ``from_description`` needs."""
        return [{k: getattr(layer, k) for k in ("index", "transposed", "stride", "padding", "output_padding", "leaky")}
                for layer in self.layers]

    @classmethod
    def quantize(cls, module) -> "IntegerStack":
        """Round a trained float stack to integers (per-output-channel binary points)."""
        layers = []
        for g in cls.geometry(module):
            m = g.pop("module")
            w = m.weight.detach().double().cpu().numpy()
            b = m.bias.detach().double().cpu().numpy()
            per_out = np.abs(w).max(axis=(0, 2, 3) if g["transposed"] else (1, 2, 3))
            with np.errstate(divide="ignore"):
                shift = np.floor(np.log2((2**WEIGHT_BITS - 1) / per_out))
            shift = np.clip(np.nan_to_num(shift, posinf=MAX_SHIFT), 0, MAX_SHIFT).astype(np.int32)
            scale = 2.0 ** shift.astype(np.float64)
            wscale = scale[None, :, None, None] if g["transposed"] else scale[:, None, None, None]
            iw = np.round(w * wscale)
            if np.abs(iw).max(initial=0) >= 2**WEIGHT_BITS:  # a weight too big for any binary point: no int16 wrap
                raise ValueError(f"integer layer {g['index']}: a weight of {np.abs(w).max():.4g} does not fit "
                                 f"{WEIGHT_BITS} bits")
            layers.append(IntLayer(**g, weight=iw.astype(np.int16),
                                   bias=np.round(b * scale * 2**ACT_BITS).astype(np.int64), shift=shift))
        return cls(layers)

    def tensors(self, prefix: str) -> dict[str, np.ndarray]:
        """The integers as named arrays; ``shift`` is shaped to broadcast against ``weight``."""
        out = {}
        for layer in self.layers:
            shape = (1, -1, 1, 1) if layer.transposed else (-1, 1, 1, 1)
            out.update({f"{prefix}.{layer.index}.weight": layer.weight, f"{prefix}.{layer.index}.bias": layer.bias,
                        f"{prefix}.{layer.index}.shift": layer.shift.reshape(shape)})
        return out

    @classmethod
    def from_tensors(cls, module, tensors: dict[str, np.ndarray], prefix: str) -> "IntegerStack":
        """Integers from shipped ``tensors``; geometry (strides, activations) from the float ``module``."""
        geo = cls.geometry(module)
        shapes = [(tuple(g["module"].weight.shape), g["module"].bias.numel()) for g in geo]
        for g in geo:
            del g["module"]
        return cls.from_description(geo, tensors, prefix, shapes)

    @classmethod
    def from_description(cls, geometry: list[dict], tensors: dict[str, np.ndarray], prefix: str,
                         shapes: list[tuple] | None = None) -> "IntegerStack":
        """Integers from shipped ``tensors``; geometry from ``description()``'s plain values; ``shapes``:
        the (weight shape, bias size) each layer must have, where the float network is at hand."""
        layers = []
        for n, g in enumerate(geometry):
            i = g["index"]
            try:
                w, b, s = (tensors[f"{prefix}.{i}.{k}"] for k in ("weight", "bias", "shift"))
            except KeyError as e:
                raise ValueError(f"integer weights {e.args[0]} missing") from None
            fits = w.ndim == 4 and b.ndim == 1 and s.size == b.size == (w.shape[1] if g["transposed"] else w.shape[0])
            if not fits or (shapes is not None and (w.shape != shapes[n][0] or b.size != shapes[n][1])):
                raise ValueError(f"integer weights {prefix}.{i} do not fit the network")
            if n and layers[-1].out_channels() != (w.shape[0] if g["transposed"] else w.shape[1]):
                raise ValueError(f"integer weights {prefix}.{i} do not fit the layer before")
            if w.dtype != np.int16 and (w.min(initial=0) < -(2**WEIGHT_BITS) or w.max(initial=0) >= 2**WEIGHT_BITS):
                raise ValueError(f"integer weights {prefix}.{i} exceed {WEIGHT_BITS} bits")
            if b.dtype != np.int64 or s.dtype != np.int32:  # as shipped: a cast would change values silently
                raise ValueError(f"integer weights {prefix}.{i}: bias must be int64 and shift int32")
            layers.append(IntLayer(**g, weight=w.astype(np.int16), bias=b.astype(np.int64),
                                   shift=s.reshape(-1).astype(np.int32)))
        return cls(layers)

    # -- evaluation ---------------------------------------------------------------------------------------
    def __call__(self, x: np.ndarray, band_rows: int | None = None) -> np.ndarray:
        """(C, H, W) int64 activations -> output int64 activations; exact, on the CPU."""
        bands = [out for _, _, out in self.bands(x, band_rows)]
        return np.concatenate(bands, axis=1) if bands else np.zeros((self.layers[-1].out_channels(), 0, x.shape[2] * self.upsampling()), np.int64)

    def bands(self, x: np.ndarray, band_rows: int | None = None):
        """Yield (first output row, end output row, output band): the output in bands of ``band_rows`` input
        rows, which bounds memory and cannot change the result. Each layer computes only the rows the band's
        output needs (its receptive field, from the layers' geometry): no halo is computed twice over."""
        x = np.clip(np.asarray(x, np.int64), -ACT_LIMIT, ACT_LIMIT)
        h = x.shape[1]
        up = self.upsampling()
        if band_rows is None:  # ~16k output positions per band: float64 conv buffers of ~0.1 GB each
            band_rows = max(1, self.band_positions // max(1, x.shape[2] * up * up))
        heights = [h]
        for layer in self.layers:
            heights.append(_out_rows(layer, heights[-1]))
        for r0 in range(0, h, band_rows):
            r1 = min(h, r0 + band_rows)
            o0, o1 = min(heights[-1], r0 * up), heights[-1] if r1 == h else min(heights[-1], r1 * up)
            if o0 >= o1:  # an output shorter than h * up: nothing left for this band
                continue
            wanted = [(o0, o1)]
            for layer, rows in zip(self.layers[::-1], heights[-2::-1]):
                wanted.append(_in_rows(layer, *wanted[-1], rows))
            wanted.reverse()  # wanted[i]: the rows of layer i's input this band needs; wanted[-1]: its output
            yield o0, o1, self._run(x[:, wanted[0][0]:wanted[0][1]], wanted, heights)

    def upsampling(self) -> int:
        f = 1.0
        for layer in self.layers:
            f = f * layer.stride if layer.transposed else f / layer.stride
        return int(f)

    def _run(self, x: np.ndarray, wanted: list[tuple[int, int]], heights: list[int]) -> np.ndarray:
        """The stack on input rows ``wanted[0]`` of an input ``heights[0]`` rows high; layer i turns its input
        rows ``wanted[i]`` into output rows ``wanted[i + 1]`` (zero rows only beyond the real borders)."""
        a = np.ascontiguousarray(x, np.float64)
        for i, layer in enumerate(self.layers):
            (lo, hi), (o0, o1) = wanted[i], wanted[i + 1]
            before, after = band_window(layer, (lo, hi), (o0, o1), heights[i])
            if layer.transposed:
                acc = _conv_transpose2d(a, layer, after)[:, before:before + o1 - o0]
            else:
                a = np.pad(a, ((0, 0), (before, after), (0, 0)))
                acc = _conv2d(a, layer.weight.shape, layer.kernels()[0][4], layer.stride, layer.padding,
                              rows_padded=False)
            acc += layer.bias.astype(np.float64)[:, None, None]
            s = layer.shift.astype(np.float64)[:, None, None]
            half = np.where(s > 0, 2.0 ** (s - 1), 0.0)
            a = np.clip(np.floor((acc + half) * 2.0 ** -s), -ACT_LIMIT, ACT_LIMIT)
            if layer.leaky:
                a = np.where(a < 0, np.floor(a * (LEAK_NUM * 2.0**-LEAK_SHIFT)), a)
        return a.astype(np.int64)


def band_window(layer: IntLayer, rows: tuple[int, int], wanted: tuple[int, int], height: int) -> tuple[int, int]:
    """How ``layer`` turns its input rows ``rows`` = [lo, hi) (of an input ``height`` rows high) into its output
    rows ``wanted`` = [o0, o1), in both stacks' bands. A convolution: the zero rows to pad the window with above and
    below (rows before 0 and from ``height`` on are its zero padding). A transposed one: the first wanted row's
    place in the window's output (its row r is output row r + stride * lo) and the extra output rows to compute
    at its bottom. AssertionError where the window misses part of the receptive field."""
    (lo, hi), (o0, o1) = rows, wanted
    if layer.transposed:
        if o0 < layer.stride * lo:
            raise AssertionError("integer band: a window short of its receptive field")
        return o0 - layer.stride * lo, max(0, o1 - layer.stride * lo - _transposed_rows(layer, hi - lo))
    first = layer.stride * o0 - layer.padding
    last = layer.stride * (o1 - 1) - layer.padding + layer.weight.shape[2]
    if (first < lo and lo > 0) or (last > hi and hi < height):
        raise AssertionError("integer band: a window short of its receptive field")
    return lo - first, last - hi


class Phase(NamedTuple):
    """One output phase of a transposed convolution in polyphase form (``phase_windows``)."""

    index: int  # in ``IntLayer.kernels()``
    row: int  # its first output row and column; the phase fills every stride-th one from there
    col: int
    kernel: np.ndarray  # its sub-kernel (O, C, taps, taps)
    rows: int  # its input window's size
    cols: int
    overlap: tuple | None  # (window slices, input slices) where the input overlaps the window, or None


def phase_windows(layer: IntLayer, h: int, wd: int, extra_rows: int = 0) -> tuple[int, int, list[Phase]]:
    """A transposed convolution of an h x wd input in polyphase form, for both stacks: its output size (torch's,
    plus ``extra_rows`` at the bottom) and its output phases. Each phase is a plain cross-correlation of its
    input window, which is the fill value (zero) outside the input."""
    k, stride = layer.weight.shape[2], layer.stride
    out_h = (h - 1) * stride - 2 * layer.padding + k + layer.output_padding + extra_rows
    out_w = (wd - 1) * stride - 2 * layer.padding + k + layer.output_padding
    phases = []
    for index, (fr, fc, br, bc, sub) in enumerate(layer.kernels()):  # br, bc: the input row and column the phase's
        tr, tc = sub.shape[2:]  # first tap reads
        nr, nc = len(range(fr, out_h, stride)), len(range(fc, out_w, stride))
        if not (nr and nc and tr and tc):
            continue
        rows, cols = nr + tr - 1, nc + tc - 1  # input window of this phase
        r0, r1 = max(0, br), min(h, br + rows)
        c0, c1 = max(0, bc), min(wd, bc + cols)
        overlap = None
        if r1 > r0 and c1 > c0:
            overlap = ((slice(r0 - br, r1 - br), slice(c0 - bc, c1 - bc)), (slice(r0, r1), slice(c0, c1)))
        phases.append(Phase(index, fr, fc, sub, rows, cols, overlap))
    return out_h, out_w, phases


def _transposed_rows(layer: IntLayer, rows: int) -> int:
    k = layer.weight.shape[2]
    return (rows - 1) * layer.stride - 2 * layer.padding + k + layer.output_padding


def _out_rows(layer: IntLayer, rows: int) -> int:
    """Output rows of ``layer`` on an input ``rows`` high (torch's shape rules)."""
    if layer.transposed:
        return _transposed_rows(layer, rows)
    return (rows + 2 * layer.padding - layer.weight.shape[2]) // layer.stride + 1


def _in_rows(layer: IntLayer, o0: int, o1: int, rows: int) -> tuple[int, int]:
    """The input rows [lo, hi) (within the input's ``rows``) that output rows [o0, o1) of ``layer`` read."""
    k, s, p = layer.weight.shape[2], layer.stride, layer.padding
    if layer.transposed:  # output j reads inputs i with 0 <= j + p - s*i < k; the window starts at or above o0's
        lo, hi = min((o0 + p - k) // s + 1, o0 // s), (o1 - 1 + p) // s + 1  # row (k < s + p leaves rows untouched)
    else:  # output j reads inputs s*j - p .. s*j - p + k - 1
        lo, hi = s * o0 - p, s * (o1 - 1) - p + k
    return max(0, lo), min(rows, hi)


COLUMN_BYTES = 1 << 26  # im2col buffer of one matrix product (64 MB); bigger outputs take several, row by row


def _conv2d(a: np.ndarray, shape: tuple[int, int, int, int], wm: np.ndarray, stride: int, padding: int,
            rows_padded: bool = True) -> np.ndarray:
    """Cross-correlation of (C,H,W) with a kernel of ``shape`` (O,C,k,k) given as the (O, C*k*k) integer matrix
    ``wm``, zero padding (on the rows too unless ``rows_padded`` is False), as torch's conv2d: matrix products over
    the (C*k*k) patches, a few output rows at a time. Exact for integers held in float64 while every sum stays
    below 2^53, so the split cannot change a bit."""
    o, c, kh, kw = shape
    if padding:
        rp = padding if rows_padded else 0
        a = np.pad(a, ((0, 0), (rp, rp), (padding, padding)))
    patches = sliding_window_view(a, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]  # C, H', W', kh, kw
    hh, ww = patches.shape[1:3]
    wm = wm.astype(np.float64, copy=False)
    out = np.empty((o, hh, ww))
    step = max(1, COLUMN_BYTES // max(1, 8 * c * kh * kw * ww))
    for r in range(0, hh, step):
        part = patches[:, r:r + step]
        cols = part.transpose(0, 3, 4, 1, 2).reshape(c * kh * kw, -1)  # copied along rows of the input
        out[:, r:r + step] = (wm @ cols).reshape(o, -1, ww)
    return out


def _conv_transpose2d(a: np.ndarray, layer: IntLayer, extra_rows: int = 0) -> np.ndarray:
    """torch's conv_transpose2d of (C,H,W) with ``layer``'s (C,O,k,k) weights, in polyphase form: each of the
    stride^2 output phases is a plain cross-correlation of the input with the kernel taps that reach it
    (``IntLayer.kernels``; no multiplications by the zeros a spread-out input would hold: a quarter of the work
    at stride 2). ``extra_rows``: more output rows at the bottom (a band's window, whose rows below are not its
    input's end)."""
    c, h, wd = a.shape
    o, stride = layer.weight.shape[1], layer.stride
    out_h, out_w, phases = phase_windows(layer, h, wd, extra_rows)
    out = np.zeros((o, out_h, out_w))
    for ph in phases:
        window = np.zeros((c, ph.rows, ph.cols))
        if ph.overlap:
            (wr, wc), (ir, ic) = ph.overlap
            window[:, wr, wc] = a[:, ir, ic]
        out[:, ph.row::stride, ph.col::stride] = _conv2d(window, ph.kernel.shape, ph.kernel.reshape(o, -1), 1, 0)
    return out
