"""The integer hyper-synthesis: exact, order-independent, close to its float form, and fixed-point gain."""

import numpy as np
import pytest
import torch
from torch import nn

from neuralcodec.coding.integer import ACT_BITS, IntegerStack, float_parameters
from neuralcodec.rate import gain_fixed


def small_hs(seed=0, n=6, m=8):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.ConvTranspose2d(n, m, 5, 2, 2, 1), nn.LeakyReLU(), nn.ConvTranspose2d(m, m, 5, 2, 2, 1), nn.LeakyReLU(),
        nn.Conv2d(m, 2 * m, 3, 1, 1),
    ).eval()


def z_symbols(shape, seed=1):
    return np.random.default_rng(seed).integers(-6, 7, shape).astype(np.int64)


def test_bands_do_not_change_a_single_bit():
    stack = IntegerStack.quantize(small_hs())
    z = z_symbols((6, 11, 9)) << ACT_BITS
    whole = stack(z, band_rows=100)
    assert whole.shape == (16, 44, 36) and whole.dtype == np.int64
    for rows in (1, 2, 3, 5):
        assert np.array_equal(stack(z, band_rows=rows), whole)


@pytest.mark.parametrize("layers", [
    lambda: [nn.Conv2d(4, 6, 5, 2, 2), nn.LeakyReLU(), nn.ConvTranspose2d(6, 6, 4, 2, 1), nn.LeakyReLU(),
             nn.Conv2d(6, 5, 3, 1, 1)],
    lambda: [nn.ConvTranspose2d(4, 6, 3, 2, 1, 1), nn.LeakyReLU(), nn.Conv2d(6, 6, 5, 1, 2), nn.LeakyReLU(),
             nn.ConvTranspose2d(6, 5, 5, 2, 2, 1)],
    lambda: [nn.ConvTranspose2d(4, 6, 1, 2, 0), nn.LeakyReLU(), nn.Conv2d(6, 5, 3, 1, 1)],  # rows no input reaches
    lambda: [nn.Conv2d(4, 6, 3, 1, 0), nn.LeakyReLU(), nn.Conv2d(6, 5, 5, 1, 1)],  # outputs shorter than the input
])
def test_bands_compute_each_layer_on_the_rows_they_need_only(layers):
    """Every layer of a band computes just the rows the band's output reads (strided, transposed, odd heights):
    any band height gives torch's single-pass integers."""
    torch.manual_seed(3)
    stack = IntegerStack.quantize(nn.Sequential(*layers()).eval())
    shrinking = not stack.layers[0].transposed and stack.layers[0].padding == 0
    for h in (5, 7, 10) if shrinking else (1, 7, 10):  # a stack without padding needs rows to convolve
        z = z_symbols((4, h, 6), seed=h) << ACT_BITS
        whole = torch_reference(stack, z)
        for rows in (1, 2, 3, 4, h):
            assert np.array_equal(stack(z, band_rows=rows), whole), (h, rows)


def torch_reference(stack: IntegerStack, x: np.ndarray) -> np.ndarray:
    """The same integer arithmetic in torch's float64 convolutions (the implementation before numpy's)."""
    import torch.nn.functional as F

    from neuralcodec.coding.integer import ACT_LIMIT, LEAK_NUM, LEAK_SHIFT

    a = torch.from_numpy(np.clip(x, -ACT_LIMIT, ACT_LIMIT).astype(np.float64))[None]
    for layer in stack.layers:
        w, b = torch.from_numpy(layer.weight.astype(np.float64)), torch.from_numpy(layer.bias.astype(np.float64))
        if layer.transposed:
            acc = F.conv_transpose2d(a, w, b, stride=layer.stride, padding=layer.padding,
                                     output_padding=layer.output_padding)
        else:
            acc = F.conv2d(a, w, b, stride=layer.stride, padding=layer.padding)
        sh = torch.from_numpy(layer.shift.astype(np.float64))[None, :, None, None]
        half = torch.where(sh > 0, 2.0 ** (sh - 1), torch.zeros_like(sh))
        a = torch.floor((acc + half) * 2.0 ** -sh).clamp_(-ACT_LIMIT, ACT_LIMIT)
        if layer.leaky:
            a = torch.where(a < 0, torch.floor(a * (LEAK_NUM * 2.0**-LEAK_SHIFT)), a)
    return a[0].numpy().astype(np.int64)


def test_numpy_evaluation_equals_torch_convolutions_bit_for_bit():
    """The numpy path (the decoder's, without torch) computes torch's convolutions' integers exactly: shipped
    priors of every geometry (the flagship's transposed convolutions, the checkerboard's context and params)
    on symbols up to the context clamp."""
    from neuralcodec.coding.integer import CONTEXT_LIMIT
    from neuralcodec.zoo import weights_io

    w = weights_io.load("flagship-2026-12-07")  # the newest int16 prior (the flagship's is 8-bit since 7b12bbb1)
    model = weights_io.build_model(w)
    stack = IntegerStack.from_tensors(model.h_s, w.tensors, "int.h_s")
    rng = np.random.default_rng(5)
    for shape, hi in [((128, 7, 9), 8), ((128, 3, 4), CONTEXT_LIMIT), ((128, 1, 1), 2)]:
        z = rng.integers(-hi, hi + 1, shape).astype(np.int64) << ACT_BITS
        assert np.array_equal(stack(z), torch_reference(stack, z))
    torch.manual_seed(0)
    for geo in (small_hs(3, n=32, m=48), nn.Sequential(nn.Conv2d(5, 7, 5, 1, 2), nn.LeakyReLU(), nn.Conv2d(7, 4, 1)),
                nn.Sequential(nn.ConvTranspose2d(4, 6, 3, 2, 1, 1), nn.Conv2d(6, 3, 5, 1, 2))):
        small = IntegerStack.quantize(geo)
        x = z_symbols((small.layers[0].weight.shape[0 if small.layers[0].transposed else 1], 9, 13)) << ACT_BITS
        got, ref = small(x), torch_reference(small, x)
        assert got.shape == ref.shape and np.array_equal(got, ref), np.argwhere(got != ref)[:3]


def test_a_plain_description_rebuilds_the_stack():
    hs = small_hs()
    stack = IntegerStack.quantize(hs)
    again = IntegerStack.from_description(stack.description(), stack.tensors("int.h_s"), "int.h_s")
    z = z_symbols((6, 5, 7)) << ACT_BITS
    assert np.array_equal(again(z), stack(z))
    tensors = stack.tensors("int.h_s")
    tensors["int.h_s.2.weight"] = tensors["int.h_s.2.weight"][:, :3]  # a hostile file: layers that do not chain
    with pytest.raises(ValueError, match="do not fit"):
        IntegerStack.from_description(stack.description(), tensors, "int.h_s")


def test_integer_stack_tracks_its_float_network():
    hs = small_hs()
    stack = IntegerStack.quantize(hs)
    z = z_symbols((6, 5, 7))
    with torch.no_grad():
        ref = hs(torch.from_numpy(z).double()[None].float())[0].double().numpy()
    got = stack(z << ACT_BITS) / 2.0**ACT_BITS
    assert np.abs(got - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())


def test_shipped_form_round_trips_exactly():
    stack = IntegerStack.quantize(small_hs())
    tensors = stack.tensors("int.h_s")
    assert all(tensors[k].dtype == np.int16 for k in tensors if k.endswith(".weight"))
    hs = small_hs(seed=7)  # other values, same geometry
    hs.load_state_dict({k.removeprefix("h_s."): torch.from_numpy(v) for k, v in float_parameters(tensors, "int.h_s").items()})
    again = IntegerStack.quantize(hs).tensors("int.h_s")
    for k in ("int.h_s.0.weight", "int.h_s.2.weight", "int.h_s.4.weight", "int.h_s.4.shift"):
        assert np.array_equal(again[k], tensors[k]), k
    loaded = IntegerStack.from_tensors(hs, tensors, "int.h_s")
    z = z_symbols((6, 4, 4)) << ACT_BITS
    assert np.array_equal(loaded(z), stack(z))


def test_bounds_that_could_break_exactness_are_refused():
    wide = nn.Sequential(nn.Conv2d(4096, 2, 3, 1, 1))  # fan-in 36864: sums could pass 2^53
    with pytest.raises(ValueError, match="exact"):
        IntegerStack.quantize(wide)


def test_missing_or_misshaped_integer_weights_are_refused():
    hs = small_hs()
    tensors = IntegerStack.quantize(hs).tensors("int.h_s")
    with pytest.raises(ValueError, match="missing"):
        IntegerStack.from_tensors(hs, {k: v for k, v in tensors.items() if "4.bias" not in k}, "int.h_s")
    tensors["int.h_s.0.weight"] = tensors["int.h_s.0.weight"][:, :3]
    with pytest.raises(ValueError, match="do not fit"):
        IntegerStack.from_tensors(hs, tensors, "int.h_s")


def test_fixed_point_gain_is_exact_and_monotonic():
    # round(2^16 * e^1) and round(2^16 * e^-1), correctly rounded
    assert gain_fixed(2.0, 65535) == 178145
    assert gain_fixed(2.0, 0) == 24109
    assert gain_fixed(2.0, 32767) == 65535  # 2^16 * exp(-2/65535) = 65534.99999
    assert gain_fixed(2.0, 0, -0.5) == 8869  # t = t_min = -0.5: 2^16 * exp(-2) = 8869.27
    assert gain_fixed(2.0, 65535, -0.5) == 178145  # t = 1 whatever t_min
    g = [gain_fixed(2.015625, r) for r in range(0, 65536, 4099)]
    assert g == sorted(g) and len(set(g)) == len(g)


def test_kernels_follow_the_weights_and_huge_weights_are_refused():
    """IntLayer.kernels is made once per weight array: a layer given other weights (replace, assignment) computes
    with those; a float weight no binary point fits in 15 bits is refused, never wrapped to int16."""
    import dataclasses

    import pytest
    import torch

    from neuralcodec.coding.integer import IntegerStack

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.ConvTranspose2d(3, 4, 5, 2, 2, 1))
    stack = IntegerStack.quantize(net)
    x = np.random.default_rng(0).integers(-300, 300, (3, 4, 5)) * 2**16
    before = stack(x)
    layer = stack.layers[0]
    doubled = dataclasses.replace(layer, weight=(layer.weight // 2).astype(np.int16))
    other = IntegerStack([doubled])(x)
    layer.weight = doubled.weight  # assigned: the cached kernels are not reused
    assert np.array_equal(stack(x), other) and not np.array_equal(other, before)
    big = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1))
    with torch.no_grad():
        big[0].weight.fill_(40000.0)
    with pytest.raises(ValueError, match="does not fit"):
        IntegerStack.quantize(big)
