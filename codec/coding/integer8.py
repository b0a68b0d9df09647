"""8-bit prior networks: a hyper-synthesis of 8-bit weights and 7-bit activations, summed exactly in int32.

The int16 stack (codec/coding/integer.py) is exact in float64, whose matrix products run at ~35 GMAC/s a core here;
this layout is exact in 32-bit integer sums, which CPUs with 8-bit dot products (VNNI, AMX, ARM's dot product)
run an order of magnitude faster (ONNX Runtime's MatMulInteger; `bench/experiments/int8_prior.py`). It is the
same stack (geometry, bands, output at 2^16) with another arithmetic, chosen by the weights: a weights file whose
prior ships as ``int8.<module>.*`` tensors is evaluated here, one with ``int.<module>.*`` by the int16 stack.

Fixed-point layout (docs/bitstream.md, "8-bit hyper-synthesis"):
- weights: int8 in [-127, 127]; per output channel an int64 bias, a multiplier m (0 <= m < 2^15) and a shift k
  (0..62);
- the first layer reads the int16 stack's input a = v * 2^16 + round(median * 2^16) (clamped to +-2^23): the
  medians' fractions matter (rounding z to integers costs 18 % of the bits at quality 0);
- every later layer reads 7-bit codes q in [0, 127] that stand for q - 8 (so -8 .. 119 steps: the leaky ReLU's
  negative side, which holds 90 % of the hidden values, keeps 8 steps); its convolution pads with the code 8;
- acc = sum (input) * weight + bias, exactly (|acc| < 2^47 by the checks below); where the float net has a leaky
  ReLU, a negative acc becomes floor(acc * 5243 / 2^19);
- a hidden layer's output code: clamp(8 + floor((acc * m + 2^(k-1)) / 2^k), 0, 127) (floor(acc * m) when k = 0);
- the last layer's output: floor((acc * m + 2^(k-1)) / 2^k) clamped to [-2^23, 2^23]: the int16 stack's output
  at 2^16.

Codes of 7 bits keep the products exact where a CPU multiplies u8 x s8 with saturating 16-bit pair sums (AVX2's
vpmaddubsw: 2 * 127 * 127 < 2^15). The first layer's sums stay below 2^53 and the later layers' below 2^31, so
float64 (numpy, the fallback) and int32 (ONNX Runtime's MatMulInteger) give the same bits in any order; on int32 the
first layer's input (up to 2^23) is split into four 7-bit digit planes, each summed exactly in int32 (``_first``);
the requantization runs in int64. Rounded after training from the shipped int16 prior, with steps fitted to the 99.9th
percentile of its activations, this layout codes Kodak's y in +0.1 / -0.1 / -0.3 % of the bits at quality 0 / 50
/ 100 (`bench/experiments/int8_stack.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from neuralcodec.coding.integer import (ACT_BITS, ACT_LIMIT, LEAK_NUM, LEAK_SHIFT, IntegerStack, IntLayer,
                                        _conv2d, _conv_transpose2d, band_window, phase_windows)

CODE_MAX = 127  # hidden activations are 7-bit codes
CODE_ZERO = 8  # ... standing for code - 8
WEIGHT_LIMIT = 127
MULT_LIMIT = 2**15
MAX_SHIFT8 = 62
PRODUCT_LIMIT = 2**31  # a layer's sums of code x weight products (int32 in ONNX Runtime)
BIAS_UNITS = 2.0**40  # the largest bias quantize makes, in units of acc
ACC_LIMIT = 2**47  # acc with its bias: times a multiplier (< 2^15) or the leak (< 2^13), still within int64
EXACT = 2**53
# the first layer on an integer product: a + DIGIT_OFFSET (0 < . < 128^4 for |a| <= 2^23) in DIGIT_PLANES 7-bit
# digits, each read with the zero point DIGIT_ZERO; DIGIT_OFFSET has that digit in every plane
DIGIT_PLANES, DIGIT_ZERO = 4, 4
DIGIT_OFFSET = DIGIT_ZERO * sum(128**k for k in range(DIGIT_PLANES))
assert ACT_LIMIT < DIGIT_OFFSET and ACT_LIMIT + DIGIT_OFFSET < 128**DIGIT_PLANES  # 0 < a + offset < 128^4
COLUMN_BYTES = 1 << 26  # uint8 columns of one matrix product (64 MB); bigger outputs take several, row by row


@dataclass
class Int8Layer(IntLayer):
    """An IntLayer whose ``weight`` is int8 and whose output is requantized by ``multiplier`` / 2^``shift``."""

    multiplier: np.ndarray = None  # int64 values, one per output channel, 0 <= m < 2^15
    _columns: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # phase -> (w, columns)

    def columns(self, phase: int) -> np.ndarray:
        """Kernel ``phase`` (``kernels()``, (O, C, kh, kw)) as the (kh * kw * C, O) int8 matrix the products read
        (rows in the order of an (H, W, C) window), made once."""
        hit = self._columns.get(phase)
        if hit is None or hit[0] is not self.weight:
            sub = self.kernels()[phase][4]
            if sub.ndim == 2:  # a convolution's kernel comes flattened
                sub = sub.reshape(self.weight.shape)
            cols = np.ascontiguousarray(sub.transpose(2, 3, 1, 0)).reshape(-1, sub.shape[0])
            hit = self._columns[phase] = (self.weight, cols)
        return hit[1]

    def taps(self, phase: int) -> tuple[int, int]:
        """(rows, columns) of kernel ``phase``."""
        if not self.transposed:
            return self.weight.shape[2], self.weight.shape[3]
        return self.kernels()[phase][4].shape[2:]


class Int8Stack(IntegerStack):
    """A chain of (transposed) convolutions with leaky ReLUs between them, in 8-bit weights and 7-bit codes.

    The interface of :class:`IntegerStack`: the input is its fixed point (v * 2^16 + median), the output its 2^16
    fixed point, and ``bands`` bounds memory without changing a bit. ``matmul``: the exact product of codes and
    weights (numpy's float64 by default; :func:`ort_matmul` for ONNX Runtime's int32)."""

    # 4k output positions per band: the uint8 columns of the last layer (~18 MB) stay in cache; on a 4096^2 image's z
    # 0.133 s/Mpx against 0.166 with the int16 stack's 16k (medians of 3, alternating; a Kodak image is one band)
    band_positions = 1 << 12

    def __init__(self, layers: list[Int8Layer], matmul=None):
        self.layers = layers
        self.matmul = matmul or numpy_matmul
        self.digits = True  # the first layer as digit planes on an integer product (False: float64, as numpy's)
        if not layers:
            raise ValueError("an empty 8-bit stack")
        for i, layer in enumerate(layers):
            w = layer.weight
            if w.dtype != np.int8 or w.size and max(-int(w.min()), int(w.max())) > WEIGHT_LIMIT:  # no copy
                raise ValueError(f"8-bit layer {i}: weights must be int8 within +-{WEIGHT_LIMIT}")
            n = layer.out_channels()
            if not (layer.bias.shape == layer.multiplier.shape == layer.shift.shape == (n,)):
                raise ValueError(f"8-bit layer {i}: bias, multiplier and shift need one value per output channel")
            if layer.bias.dtype != np.int64 or layer.multiplier.dtype != np.int64 or layer.shift.dtype != np.int32:
                raise ValueError(f"8-bit layer {i}: bias and multiplier must be int64, shift int32 values")
            inputs = ACT_LIMIT if i == 0 else CODE_MAX
            products = layer.fan_in() * inputs * WEIGHT_LIMIT
            if i == 0 and layer.fan_in() * (CODE_MAX - DIGIT_ZERO) * WEIGHT_LIMIT >= PRODUCT_LIMIT:
                raise ValueError("8-bit layer 0: a digit plane's sums may reach int32's limit")
            b = layer.bias  # Python ints: np.abs of int64's minimum overflows to itself
            bias = max(-int(b.min(initial=0)), int(b.max(initial=0)))
            if products >= (EXACT if i == 0 else PRODUCT_LIMIT) or products + bias >= ACC_LIMIT:
                raise ValueError(f"8-bit layer {i}: sums may reach {products + bias:.3g}, beyond exact arithmetic")
            if not (0 <= layer.multiplier.min() and layer.multiplier.max() < MULT_LIMIT):
                raise ValueError(f"8-bit layer {i}: a multiplier outside 0..2^15")
            if not (0 <= layer.shift.min() and layer.shift.max() <= MAX_SHIFT8):
                raise ValueError(f"8-bit layer {i}: shift outside 0..{MAX_SHIFT8}")

    def with_matmul(self, matmul) -> "Int8Stack":
        """The same stack evaluated by another exact product (e.g. :func:`ort_matmul`'s)."""
        return Int8Stack(self.layers, matmul)

    # -- building -----------------------------------------------------------------------------------------
    @classmethod
    def quantize(cls, module, steps: list[float]) -> "Int8Stack":
        """Round a trained float stack to this layout. ``steps``: the value of one code step at the input of each
        layer after the first (fitted to its activations, e.g. a high percentile / 119); weights get a step per
        output channel (largest magnitude / 127), the first layer's input is the int16 stack's (2^-16) and the
        last layer's output its 2^-16 too."""
        geo = cls.geometry(module)
        if len(steps) != len(geo) - 1 or min(steps, default=1) <= 0:
            raise ValueError("one positive input step per layer after the first")
        inputs = [2.0**-ACT_BITS, *steps]
        layers = []
        for i, g in enumerate(geo):
            m = g.pop("module")
            w = m.weight.detach().double().cpu().numpy()
            b = m.bias.detach().double().cpu().numpy()
            per_out = np.abs(w).max(axis=(0, 2, 3) if g["transposed"] else (1, 2, 3))
            # a step per output channel; a (nearly) dead channel's floor keeps its bias within 2^40 units of acc
            w_step = np.maximum(per_out / WEIGHT_LIMIT, np.abs(b) / (BIAS_UNITS * inputs[i]))
            w_step = np.where(w_step > 0, w_step, 1.0)
            shape = (1, -1, 1, 1) if g["transposed"] else (-1, 1, 1, 1)
            iw = np.clip(np.round(w / w_step.reshape(shape)), -WEIGHT_LIMIT, WEIGHT_LIMIT).astype(np.int8)
            acc_step = inputs[i] * w_step  # the value of one unit of acc, per output channel
            out_step = inputs[i + 1] if i + 1 < len(geo) else 2.0**-ACT_BITS
            mult, shift = _fixed_ratio(acc_step / out_step)
            layers.append(Int8Layer(**g, weight=iw, bias=np.round(b / acc_step).astype(np.int64), shift=shift,
                                    multiplier=mult))
        return cls(layers)

    def tensors(self, prefix: str) -> dict[str, np.ndarray]:
        """The integers as named arrays; ``multiplier`` and ``shift`` are shaped to broadcast against ``weight``."""
        out = {}
        for layer in self.layers:
            p, shape = f"{prefix}.{layer.index}", (1, -1, 1, 1) if layer.transposed else (-1, 1, 1, 1)
            out.update({f"{p}.weight": layer.weight, f"{p}.bias": layer.bias.astype(np.int64),
                        f"{p}.multiplier": layer.multiplier.astype(np.int32).reshape(shape),
                        f"{p}.shift": layer.shift.astype(np.int32).reshape(shape)})
        return out

    @classmethod
    def from_description(cls, geometry: list[dict], tensors: dict[str, np.ndarray], prefix: str,
                         shapes: list[tuple] | None = None, matmul=None) -> "Int8Stack":
        """The integers from shipped ``tensors``, the geometry from ``description()``'s plain values; ``matmul``:
        the exact product to evaluate with (None: numpy's)."""
        layers = []
        for n, g in enumerate(geometry):
            i = g["index"]
            try:
                w, b, m, s = (tensors[f"{prefix}.{i}.{k}"] for k in ("weight", "bias", "multiplier", "shift"))
            except KeyError as e:
                raise ValueError(f"8-bit weights {e.args[0]} missing") from None
            out = w.shape[1] if g["transposed"] else w.shape[0] if w.ndim == 4 else -1
            b, m, s = b.reshape(-1), m.reshape(-1), s.reshape(-1)
            if w.ndim != 4 or w.dtype != np.int8 or any(t.shape != (out,) for t in (b, m, s)):
                raise ValueError(f"8-bit weights {prefix}.{i} do not fit the network")
            if w.shape[2] != w.shape[3]:
                raise ValueError(f"8-bit weights {prefix}.{i}: kernels must be square")
            if b.dtype != np.int64 or m.dtype != np.int32 or s.dtype != np.int32:  # as shipped: no silent casts
                raise ValueError(f"8-bit weights {prefix}.{i}: bias must be int64, multiplier and shift int32")
            if shapes is not None and (w.shape != shapes[n][0] or b.size != shapes[n][1]):
                raise ValueError(f"8-bit weights {prefix}.{i} do not fit the network")
            if n and layers[-1].out_channels() != (w.shape[0] if g["transposed"] else w.shape[1]):
                raise ValueError(f"8-bit weights {prefix}.{i} do not fit the layer before")
            layers.append(Int8Layer(**g, weight=w, bias=b, shift=s, multiplier=m.astype(np.int64)))
        return cls(layers, matmul)

    # -- evaluation ---------------------------------------------------------------------------------------
    def _run(self, x: np.ndarray, wanted: list[tuple[int, int]], heights: list[int]) -> np.ndarray:
        """The first layer on the fixed point (C, H, W) (``_first``), the later ones on codes laid out (H, W, C): each
        output position's input window is then a few contiguous runs of C bytes, and the products' (positions,
        channels) output is the next layer's input as it comes."""
        a = x
        for i, layer in enumerate(self.layers):
            o0, o1 = wanted[i + 1]
            p = layer.padding
            before, after = band_window(layer, wanted[i], (o0, o1), heights[i])
            if i == 0:
                acc = self._first(a, layer, before, after)
            elif layer.transposed:
                acc = self._conv_transpose(a, layer, after)
            else:
                a = np.pad(a, ((before, after), (p, p), (0, 0)), constant_values=CODE_ZERO)
                acc = self._conv(a, layer, 0, layer.stride)
            if layer.transposed:
                acc = acc[before:before + o1 - o0]
            s = layer.shift.astype(np.int64)
            rounding = np.where(s > 0, np.left_shift(1, np.maximum(s - 1, 0)), 0)
            if layer.leaky:  # max(acc, floor(acc * leak)): acc where acc >= 0, the leak's floor below (integers)
                acc += layer.bias
                np.maximum(acc, (acc * LEAK_NUM) >> LEAK_SHIFT, out=acc)
                acc *= layer.multiplier
                acc += rounding
            else:  # (acc + bias) * m + rounding in two passes: acc * m and the sum stay below 2^62 + 2^61 (ACC_LIMIT)
                acc *= layer.multiplier
                acc += layer.bias * layer.multiplier + rounding
            acc >>= s  # floor: an arithmetic shift
            if i == len(self.layers) - 1:
                return np.clip(acc, -ACT_LIMIT, ACT_LIMIT, out=acc).transpose(2, 0, 1).copy()
            acc += CODE_ZERO
            a = np.ascontiguousarray(np.clip(acc, 0, CODE_MAX, out=acc), np.uint8)
        raise AssertionError("unreachable")

    def _first(self, a: np.ndarray, layer: Int8Layer, before: int, after: int) -> np.ndarray:
        """The first layer's exact sums (H', W', O) int64 on the fixed point ``a`` (C, H, W), whose values reach
        2^23: in float64 on numpy's product; on an integer product as four 7-bit digit planes of a + OFFSET, each
        with the zero point DIGIT_ZERO (so padding, a = 0, is that digit in every plane), summed as
        sum_k 128^k * conv(digit_k - DIGIT_ZERO) = conv(a): the same integers (every plane's sums < 2^31, checked
        with the weights)."""
        if self.matmul is numpy_matmul or not self.digits:
            a = np.ascontiguousarray(a, np.float64)
            if layer.transposed:
                return _conv_transpose2d(a, layer, after).transpose(1, 2, 0).astype(np.int64)
            a = np.pad(a, ((0, 0), (before, after), (0, 0)))
            return _conv2d(a, layer.weight.shape, layer.kernels()[0][4], layer.stride, layer.padding,
                           rows_padded=False).transpose(1, 2, 0).astype(np.int64)
        u = np.asarray(a, np.int64).transpose(1, 2, 0) + DIGIT_OFFSET  # (H, W, C), 0 < u < 128^4
        acc = None
        for k in range(DIGIT_PLANES):
            codes = np.ascontiguousarray((u >> (7 * k)) & 127, np.uint8)
            if layer.transposed:
                part = self._conv_transpose(codes, layer, after, DIGIT_ZERO)
            else:
                p = layer.padding
                codes = np.pad(codes, ((before, after), (p, p), (0, 0)), constant_values=DIGIT_ZERO)
                part = self._conv(codes, layer, 0, layer.stride, DIGIT_ZERO)
            if acc is None:
                acc = part
            else:
                part <<= 7 * k
                acc += part
        return acc

    def _conv(self, codes: np.ndarray, layer: Int8Layer, phase: int, stride: int, zero: int = CODE_ZERO) -> np.ndarray:
        """Cross-correlation of padded codes (H, W, C) with kernel ``phase`` of ``layer``: (H', W', O) holding the
        exact sums of (code - zero) * weight, a few output rows per product."""
        kh, kw = layer.taps(phase)
        bt = layer.columns(phase)  # (kh * kw * C, O) int8
        c, o = codes.shape[2], bt.shape[1]
        patches = sliding_window_view(codes, (kh, kw), axis=(0, 1))[::stride, ::stride]  # H', W', C, kh, kw
        hh, ww = patches.shape[:2]
        out = np.empty((hh, ww, o), np.int64)
        step = max(1, COLUMN_BYTES // max(1, c * kh * kw * ww))
        for r in range(0, hh, step):
            cols = np.ascontiguousarray(patches[r:r + step].transpose(0, 1, 3, 4, 2)).reshape(-1, kh * kw * c)
            out[r:r + step] = self.matmul(cols, bt, zero).reshape(-1, ww, o)
        return out

    def _conv_transpose(self, codes: np.ndarray, layer: Int8Layer, extra_rows: int = 0,
                        zero: int = CODE_ZERO) -> np.ndarray:
        """torch's conv_transpose2d in polyphase form (as the int16 stack's ``_conv_transpose2d``), on codes
        (H, W, C) padded with the code for 0 (``zero``); (H', W', O)."""
        h, wd, c = codes.shape
        o, stride = layer.weight.shape[1], layer.stride
        out_h, out_w, phases = phase_windows(layer, h, wd, extra_rows)
        out = np.zeros((out_h, out_w, o), np.int64)
        for ph in phases:
            window = np.full((ph.rows, ph.cols, c), zero, np.uint8)
            if ph.overlap:
                (wr, wc), (ir, ic) = ph.overlap
                window[wr, wc] = codes[ir, ic]
            out[ph.row::stride, ph.col::stride] = self._conv(window, layer, ph.index, 1, zero)
        return out


def float_parameters8(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The float weights and biases of every 8-bit prior in shipped ``tensors`` (``int8.<name>.*`` with the input
    ``steps`` it was made with), named as the float network's: training resumes from them."""
    names = {k.split(".")[1] for k in tensors if k.startswith("int8.")}
    missing = sorted(n for n in names if f"int8.{n}.steps" not in tensors)
    if missing:
        raise ValueError(f"8-bit prior {missing[0]} without its steps: its float form cannot be recovered")
    out = {}
    for key in tensors:
        if not (key.startswith("int8.") and key.endswith(".steps")):
            continue
        name = key[len("int8."):-len(".steps")]
        inputs = [2.0**-ACT_BITS, *(float(s) for s in tensors[key])]
        indices = sorted(int(k.split(".")[-2]) for k in tensors if k.startswith(f"int8.{name}.")
                         and k.endswith(".multiplier"))
        if len(inputs) != len(indices) or not all(np.isfinite(s) and s > 0 for s in inputs):
            raise ValueError(f"{key}: one positive step per layer after the first")
        for n, i in enumerate(indices):
            p = f"int8.{name}.{i}"
            out_step = inputs[n + 1] if n + 1 < len(indices) else 2.0**-ACT_BITS
            # multiplier and shift are shaped to broadcast against the weight (its output-channel axis)
            acc_step = tensors[f"{p}.multiplier"] * 2.0 ** -tensors[f"{p}.shift"].astype(np.float64) * out_step
            out[f"{name}.{i}.weight"] = (tensors[f"{p}.weight"] * (acc_step / inputs[n])).astype(np.float32)
            out[f"{name}.{i}.bias"] = (tensors[f"{p}.bias"] * acc_step.reshape(-1)).astype(np.float32)
    return out


def numpy_matmul(cols: np.ndarray, bt: np.ndarray, zero: int) -> np.ndarray:
    """(N, K) uint8 codes less ``zero`` times (K, O) int8 weights: exact in float64 (every sum < 2^31)."""
    a = cols.astype(np.float64)
    a -= zero
    return a @ bt.astype(np.float64)


def _fixed_ratio(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, m and k with m / 2^k ~= r, m in [2^14, 2^15) where k allows (0 <= k <= 62)."""
    r = np.asarray(r, np.float64)
    if not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ValueError("requantization ratios must be positive")
    k = np.clip(14 - np.floor(np.log2(r)), 0, MAX_SHIFT8)
    m = np.round(r * 2.0**k)
    over = (m >= MULT_LIMIT) & (k > 0)
    m, k = np.where(over, np.round(r * 2.0 ** (k - 1)), m), np.where(over, k - 1, k)
    if np.any(m >= MULT_LIMIT):
        raise ValueError("a requantization ratio of 2^15 or more: steps too far apart")
    return m.astype(np.int64), k.astype(np.int32)


# MatMulInteger(a: uint8 [N, K], b: int8 [K, O], a_zero_point: uint8 scalar) -> int32 [N, O], opset 17, as an ONNX
# model (108 bytes; tests/test_integer8.py rebuilds it with the onnx package and compares), so that evaluating the
# prior needs onnxruntime but not onnx
MATMUL_INTEGER_ONNX = bytes.fromhex(
    "08083a620a1c0a01610a01620a02617a120179220d4d61744d756c496e74656765721201675a0f0a0161120a0a08080212040a000a005a0f"
    "0a0162120a0a08080312040a000a005a0c0a02617a12060a0408021200620f0a0179120a0a08080612040a000a0042040a001011")


def ort_matmul(threads: int = 1):
    """The exact product on ONNX Runtime's MatMulInteger (int32 sums; ~20x numpy's float64 on one core of an
    AVX-512 VNNI CPU, `bench/experiments/int8_stack.py`); None where onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    session = ort.InferenceSession(MATMUL_INTEGER_ONNX, so, providers=["CPUExecutionProvider"])

    zeros = {z: np.array(z, np.uint8) for z in (CODE_ZERO, DIGIT_ZERO)}

    def matmul(cols: np.ndarray, bt: np.ndarray, zero_point: int) -> np.ndarray:
        if zero_point not in zeros:
            raise ValueError(f"the 8-bit product's zero point is {CODE_ZERO} (codes) or {DIGIT_ZERO} (digits)")
        return session.run(None, {"a": cols, "b": bt, "az": zeros[zero_point]})[0]

    return matmul
