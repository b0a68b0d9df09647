"""The 8-bit hyper-synthesis: exact on numpy and ONNX Runtime alike, band-independent, close to its float form."""

import numpy as np
import pytest
import torch
from torch import nn

from neuralcodec.coding.integer import ACT_BITS, ACT_LIMIT
from neuralcodec.coding.integer8 import (CODE_MAX, CODE_ZERO, MATMUL_INTEGER_ONNX, Int8Stack, float_parameters8,
                                         ort_matmul)

STEPS = [0.05, 0.05]


def small_hs(seed=0, n=6, m=8):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.ConvTranspose2d(n, m, 5, 2, 2, 1), nn.LeakyReLU(), nn.ConvTranspose2d(m, m, 5, 2, 2, 1), nn.LeakyReLU(),
        nn.Conv2d(m, 2 * m, 3, 1, 1),
    ).eval()


def z_fixed(shape, seed=1, spread=6):
    v = np.random.default_rng(seed).integers(-spread, spread + 1, shape).astype(np.int64)
    return v << ACT_BITS


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
    z = rng.choice([-ACT_LIMIT, ACT_LIMIT, 0, 63 << ACT_BITS, -(64 << ACT_BITS), 1], size=(6, 7, 5))
    ref = stack(z)
    assert ref.max() == ACT_LIMIT and ref.min() == -ACT_LIMIT and (ref == 0).any()
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


def test_float_parameters_invert_the_rounding():
    hs = small_hs(seed=7)
    tensors = Int8Stack.quantize(hs, STEPS).tensors("int8.h_s")
    assert float_parameters8(tensors) == {}  # without its steps, no float form
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
    export_run(run, path, prior_bits=8)
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
    r2 = Recipe(**{**r.__dict__, "steps": 1})
    train(r2, tmp_path / "again", init_weights=str(path), progress=False)  # training resumes from 8-bit weights


def test_calibration_refuses_what_it_cannot_fit(tmp_path):
    from neuralcodec.models import build
    from neuralcodec.train import calibrate

    with pytest.raises(calibrate.CalibrationError, match="no images"):
        calibrate.image_paths(tmp_path, 4)
    model = build("modhpc", N=8, M=6)  # a checkerboard level: no 8-bit layout for its context networks
    with pytest.raises(calibrate.CalibrationError, match="factorized level above a Gaussian"):
        calibrate.prior_steps(model, [])
