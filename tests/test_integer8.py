"""The 8-bit hyper-synthesis: exact on numpy and ONNX Runtime alike, band-independent, close to its float form."""

import numpy as np
import pytest
import torch
from torch import nn

from neuralcodec.coding.integer import ACT_BITS, ACT_LIMIT
from neuralcodec.coding.integer8 import (CODE_MAX, CODE_ZERO, MATMUL_INTEGER_ONNX, Int8Stack, float_parameters8,
                                         ort_matmul)

from test_integer import small_hs  # the int16 tests' small h_s

STEPS = [0.05, 0.05]


def int32_product(cols, bt, zero):
    """An integer product as ONNX Runtime's MatMulInteger computes it (int32 sums), asserting that they fit: the
    8-bit stack's integer path (its first layer as digit planes) without onnxruntime."""
    out = (cols.astype(np.int64) - zero) @ bt.astype(np.int64)
    assert np.abs(out).max(initial=0) < 2**31
    return out.astype(np.int32)


def z_fixed(shape, seed=1, spread=6):
    v = np.random.default_rng(seed).integers(-spread, spread + 1, shape).astype(np.int64)
    return v << ACT_BITS


def reference(stack: Int8Stack, z: np.ndarray) -> np.ndarray:
    """docs/bitstream.md's 8-bit hyper-synthesis, step by step, on torch's own (transposed) convolutions in
    float64 (exact for these small integers): shares no code with Int8Stack's evaluation."""
    a = torch.from_numpy(np.clip(z, -ACT_LIMIT, ACT_LIMIT).astype(np.float64))[None]
    for i, layer in enumerate(stack.layers):
        w = torch.from_numpy(layer.weight.astype(np.float64))
        if layer.transposed:
            acc = torch.nn.functional.conv_transpose2d(a, w, None, layer.stride, layer.padding, layer.output_padding)
        else:
            acc = torch.nn.functional.conv2d(a, w, None, layer.stride, layer.padding)
        acc = acc[0].numpy().astype(np.int64) + layer.bias[:, None, None]
        if layer.leaky:
            acc = np.where(acc < 0, np.floor_divide(acc * 5243, 2**19), acc)
        m, k = layer.multiplier[:, None, None], layer.shift[:, None, None].astype(np.int64)
        r = np.floor_divide(acc * m + np.where(k > 0, 2 ** np.maximum(k - 1, 0), 0), 2**k)
        if i == len(stack.layers) - 1:
            return np.clip(r, -ACT_LIMIT, ACT_LIMIT)
        a = torch.from_numpy((np.clip(r + CODE_ZERO, 0, CODE_MAX) - CODE_ZERO).astype(np.float64))[None]


@pytest.mark.parametrize("net", [
    lambda: small_hs(seed=11),
    lambda: nn.Sequential(nn.Conv2d(6, 7, 5, 1, 2), nn.LeakyReLU(), nn.Conv2d(7, 9, 3, 2, 1), nn.LeakyReLU(),
                          nn.ConvTranspose2d(9, 5, 3, 2, 1, 1), nn.LeakyReLU(), nn.Conv2d(5, 4, 1, 1, 0)),
    lambda: nn.Sequential(nn.ConvTranspose2d(6, 5, 4, 2, 1, 0), nn.LeakyReLU(), nn.ConvTranspose2d(5, 3, 3, 3, 0, 2)),
])
def test_matches_an_independent_reading_of_the_spec(net, monkeypatch):
    """Odd shapes, strides 1-3, kernels 1-5, output paddings 0-2, extreme weights and multipliers; whole, in bands
    and in one-row products (COLUMN_BYTES), on numpy and on ONNX Runtime."""
    from neuralcodec.coding import integer8

    torch.manual_seed(0)
    module = net().eval()
    rng = np.random.default_rng(0)
    stack = Int8Stack.quantize(module, [0.02] * (len(module) // 2))
    for layer in stack.layers:
        layer.weight[...] = rng.choice(np.array([-127, 127, 0, 3, -5], np.int8), size=layer.weight.shape)
        layer.multiplier[...] = rng.integers(0, 2**15, size=layer.multiplier.shape)
        layer.shift[...] = rng.integers(10, 30, size=layer.shift.shape)
    first = stack.layers[0]
    channels = first.weight.shape[0] if first.transposed else first.weight.shape[1]
    matmul = ort_matmul()
    for shape in [(7, 9), (1, 1), (2, 13)]:
        z = rng.integers(-300, 300, (channels, *shape)) * (1 << 14) + rng.integers(-2**15, 2**15, (channels, 1, 1))
        ref = reference(stack, z)
        for rows in (None, 1, 3):
            assert np.array_equal(stack(z, band_rows=rows), ref)
            assert np.array_equal(stack.with_matmul(int32_product)(z, band_rows=rows), ref)
            if matmul is not None:
                assert np.array_equal(stack.with_matmul(matmul)(z, band_rows=rows), ref)
    monkeypatch.setattr(integer8, "COLUMN_BYTES", 1)  # every product one output row
    assert np.array_equal(stack(z), ref)
    assert np.array_equal(stack.with_matmul(int32_product)(z), ref)


def test_the_embedded_graph_is_what_onnx_builds():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("MatMulInteger", ["a", "b", "az"], ["y"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, None]),
                                        helper.make_tensor_value_info("b", TensorProto.INT8, [None, None]),
                                        helper.make_tensor_value_info("az", TensorProto.UINT8, [])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, [None, None])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    assert m.SerializeToString() == MATMUL_INTEGER_ONNX


def test_numpy_and_onnx_runtime_give_the_same_bits_and_bands_change_none():
    stack = Int8Stack.quantize(small_hs(), STEPS)
    z = z_fixed((6, 11, 9))
    whole = stack(z, band_rows=100)
    assert whole.shape == (16, 44, 36) and whole.dtype == np.int64
    for rows in (1, 2, 5):
        assert np.array_equal(stack(z, band_rows=rows), whole)
    matmul = ort_matmul()
    if matmul is None:
        pytest.skip("onnxruntime is not installed")
    assert np.array_equal(stack.with_matmul(matmul)(z), whole)
    assert np.array_equal(stack.with_matmul(matmul)(z, band_rows=3), whole)


def test_extremes_are_exact_on_both():
    """Saturating inputs, the largest weights and multipliers, shift 0: codes at both ends, the output clamped,
    and still the same integers on both."""
    stack = Int8Stack.quantize(small_hs(seed=3), STEPS)
    rng = np.random.default_rng(2)
    for layer in stack.layers:
        layer.weight[...] = rng.choice(np.array([-127, 127, 0, 1], np.int8), size=layer.weight.shape)
        layer.multiplier[...] = rng.choice([2**15 - 1, 1, 0], size=layer.multiplier.shape)
        layer.shift[...] = rng.choice([0, 7, 62], size=layer.shift.shape)
    z = rng.choice([-ACT_LIMIT, ACT_LIMIT, 0, 63 << ACT_BITS, -(64 << ACT_BITS), 1, -1], size=(6, 7, 5))
    ref = stack(z)
    assert ref.max() == ACT_LIMIT and ref.min() == -ACT_LIMIT and (ref == 0).any()
    assert np.array_equal(stack.with_matmul(int32_product)(z), ref)  # digit planes at both ends of the input
    matmul = ort_matmul()
    if matmul is None:
        pytest.skip("onnxruntime is not installed")
    assert np.array_equal(stack.with_matmul(matmul)(z), ref)


def test_close_to_the_float_network():
    """With steps fitted to its activations, the 8-bit net tracks the float net, leaky ReLUs and all."""
    hs = small_hs(seed=5)
    z = z_fixed((6, 8, 8), seed=4, spread=3) + (1 << (ACT_BITS - 2))  # medians with fractions
    with torch.no_grad():
        x = torch.from_numpy((z / 2**ACT_BITS).astype(np.float32))[None]
        h1 = hs[1](hs[0](x))
        h2 = hs[3](hs[2](h1))
        ref = hs[4](h2)[0].numpy()
    steps = [float(h1.max()) / (CODE_MAX - CODE_ZERO), float(h2.max()) / (CODE_MAX - CODE_ZERO)]
    out = Int8Stack.quantize(hs, steps)(z) / 2**ACT_BITS
    assert np.abs(out - ref).max() < 0.03 * np.abs(ref).max()


def test_shipped_tensors_round_trip_and_bad_ones_are_refused():
    stack = Int8Stack.quantize(small_hs(), STEPS)
    tensors = stack.tensors("int8.h_s")
    assert tensors["int8.h_s.0.weight"].dtype == np.int8 and tensors["int8.h_s.4.multiplier"].dtype == np.int32
    again = Int8Stack.from_description(stack.description(), tensors, "int8.h_s")
    z = z_fixed((6, 5, 4))
    assert np.array_equal(again(z), stack(z))
    with pytest.raises(ValueError, match="missing"):
        Int8Stack.from_description(stack.description(), {k: v for k, v in tensors.items() if "2.shift" not in k},
                                   "int8.h_s")
    bad = dict(tensors)
    bad["int8.h_s.2.weight"] = np.full_like(tensors["int8.h_s.2.weight"], -128)
    with pytest.raises(ValueError, match="int8 within"):
        Int8Stack.from_description(stack.description(), bad, "int8.h_s")
    bad = dict(tensors)
    bad["int8.h_s.4.bias"] = np.full_like(tensors["int8.h_s.4.bias"], 2**47)
    with pytest.raises(ValueError, match="beyond exact"):
        Int8Stack.from_description(stack.description(), bad, "int8.h_s")
    bad = dict(tensors)
    bad["int8.h_s.0.multiplier"] = np.full_like(tensors["int8.h_s.0.multiplier"], 2**15)
    with pytest.raises(ValueError, match="multiplier"):
        Int8Stack.from_description(stack.description(), bad, "int8.h_s")
    bad = dict(tensors)  # np.abs(int64 minimum) is negative: the bound is taken in Python integers
    bad["int8.h_s.2.bias"] = np.full_like(tensors["int8.h_s.2.bias"], np.iinfo(np.int64).min)
    with pytest.raises(ValueError, match="beyond exact"):
        Int8Stack.from_description(stack.description(), bad, "int8.h_s")
    for key, dtype in (("int8.h_s.2.shift", np.int64), ("int8.h_s.2.multiplier", np.float32),
                       ("int8.h_s.2.bias", np.float64)):
        bad = dict(tensors)  # a cast would change values silently (2^32 + 3 -> 3): refused
        bad[key] = tensors[key].astype(dtype)
        with pytest.raises(ValueError, match="must be int64"):
            Int8Stack.from_description(stack.description(), bad, "int8.h_s")


def test_float_parameters_invert_the_rounding():
    hs = small_hs(seed=7)
    tensors = Int8Stack.quantize(hs, STEPS).tensors("int8.h_s")
    with pytest.raises(ValueError, match="without its steps"):
        float_parameters8(tensors)
    tensors["int8.h_s.steps"] = np.array(STEPS)
    back = float_parameters8(tensors)
    for i in (0, 2, 4):
        w = hs[i].weight.detach().numpy()
        assert np.abs(back[f"h_s.{i}.weight"] - w).max() <= np.abs(w).max() / 127 * 0.51 + 1e-6
        assert np.allclose(back[f"h_s.{i}.bias"], hs[i].bias.detach().numpy(), atol=1e-3)


def test_the_first_layer_reads_z_with_its_fractions():
    stack = Int8Stack.quantize(small_hs(), STEPS)
    z = z_fixed((6, 4, 4))
    assert not np.array_equal(stack(z), stack(z + (1 << (ACT_BITS - 1))))
    big = np.full((6, 3, 3), 1 << 30, np.int64)  # clamped to 2^23, as the int16 stack's input
    assert np.array_equal(stack(big), stack(np.full((6, 3, 3), ACT_LIMIT, np.int64)))


def test_onnx_runtime_product_refuses_another_zero_point():
    matmul = ort_matmul()
    if matmul is None:
        pytest.skip("onnxruntime is not installed")
    with pytest.raises(ValueError, match="zero point"):
        matmul(np.zeros((2, 3), np.uint8), np.zeros((3, 4), np.int8), 0)


def test_a_run_exports_with_an_8_bit_prior_that_codes_decodes_and_trains_on(tmp_path, monkeypatch):
    import neuralcodec
    from neuralcodec import api
    from neuralcodec.coding import integer8
    from neuralcodec.train.loop import Recipe, export_run, train
    from neuralcodec.zoo import weights_io

    from conftest import photo, photo_files

    data = photo_files(tmp_path / "data", 2, 70, 80)
    run = tmp_path / "run"
    r = Recipe(model={"N": 8, "M": 6, "lmbda_min": 0.0015, "lmbda_max": 0.2, "t_min": -0.3}, data=str(data),
               crop=64, batch=2, steps=2, warmup=1, threads=1, log_every=1, checkpoint_minutes=100)
    train(r, run, progress=False)
    path = tmp_path / "w8.safetensors"
    from click.testing import CliRunner

    from neuralcodec.cli.main import main

    res = CliRunner().invoke(main, ["export", str(run), "-o", str(path), "--prior-bits", "8", "--calibration", str(data)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["export", str(run), "-o", str(tmp_path / "x.safetensors"), "--prior-bits", "8",
                                    "--calibration", str(tmp_path / "run")])  # a directory without images
    assert res.exit_code == 1 and "no images" in res.output
    w = weights_io.load(path)
    assert w.tensors["int8.h_s.0.weight"].dtype == np.int8 and not any(k.startswith("int.") for k in w.tensors)
    card = __import__("json").loads(path.with_suffix(".json").read_text())
    assert card["prior"]["bits"] == 8 and len(card["prior"]["steps"]["h_s"]) == 2
    img = photo(40, 56, 7)
    data8 = neuralcodec.compress(img, 40, weights=str(path))
    out = np.asarray(neuralcodec.decompress(data8, weights=str(path)))
    assert out.shape == img.shape
    api._load_codec.cache_clear()
    monkeypatch.setattr(integer8, "ort_matmul", lambda threads=1: None)  # numpy's product: the same latents
    try:
        assert np.array_equal(np.asarray(neuralcodec.decompress(data8, weights=str(path))), out)
        assert neuralcodec.compress(img, 40, weights=str(path)) == data8
    finally:
        api._load_codec.cache_clear()
    # training resumes from 8-bit weights; a decoder-only fine-tune of them keeps their prior bit for bit
    r2 = Recipe(**{**r.__dict__, "steps": 1, "train_only": ["g_s."]})
    train(r2, tmp_path / "again", init_weights=str(path), progress=False)
    tuned = tmp_path / "tuned.safetensors"
    with pytest.raises(Exception, match="keeps its base's prior"):
        export_run(tmp_path / "again", tuned, decodes=str(path), prior_bits=8)
    export_run(tmp_path / "again", tuned, decodes=str(path))
    t8 = weights_io.load(tuned)
    assert all(np.array_equal(t8.tensors[k], v) for k, v in w.tensors.items() if k.startswith("int8."))
    both = {**w.tensors, "int.h_s.0.weight": np.zeros((8, 6, 5, 5), np.int16)}
    from neuralcodec.pipeline.codec import _prior
    with pytest.raises(ValueError, match="both an 8-bit and a 16-bit"):
        _prior(api.load_codec(str(path)).spec.integer["h_s"], both, "h_s")


def test_calibration_refuses_what_it_cannot_fit(tmp_path):
    from neuralcodec.models import build
    from neuralcodec.train import calibrate

    with pytest.raises(calibrate.CalibrationError, match="no images"):
        calibrate.image_paths(tmp_path, 4)
    model = build("modhpc", N=8, M=6)  # a checkerboard level: no 8-bit layout for its context networks
    with pytest.raises(calibrate.CalibrationError, match="factorized level above a Gaussian"):
        calibrate.prior_steps(model, [])
