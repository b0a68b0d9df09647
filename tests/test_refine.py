"""Encoder-side latent refinement: same format, any decoder, never a worse estimated cost."""

import numpy as np
import pytest
import torch

import neuralcodec
from neuralcodec.api import load_codec
from neuralcodec.pipeline.refine import refine, symbol_bits

from conftest import photo


def _toy(seed=0, stride=4, channels=6):
    torch.manual_seed(seed)
    synth = torch.nn.ConvTranspose2d(channels, 3, 2 * stride, stride, padding=stride // 2).requires_grad_(False)
    y = torch.randn(1, channels, 5, 7) * 3
    x = torch.sigmoid(synth(torch.randn(1, channels, 5, 7) * 3))
    means, indexes, table = torch.zeros_like(y), torch.zeros(y.shape[1:], dtype=torch.uint8), torch.tensor([2.0])
    return synth, x, y, means, indexes, table


def _reader(x):
    return lambda rows, cols: x[:, :, rows, cols]


def _cost(synth, x, y, means, lmbda):
    with torch.no_grad():
        v = torch.round(y - means)
        x_hat = synth(v + means).clamp(0, 1)
        return symbol_bits(v, torch.full_like(v, 2.0)).sum().item() / (x.shape[2] * x.shape[3]) + lmbda * 255**2 * (
            (x_hat - x).pow(2).mean().item())


def test_symbol_bits_is_the_discretized_gaussian():
    v, s = torch.tensor([0.0, 1.0, -3.0]), torch.tensor([1.0, 1.0, 2.0])
    from math import erf, log2, sqrt

    phi = lambda u: 0.5 * (1 + erf(u / sqrt(2)))  # noqa: E731
    want = [-log2(phi((abs(a) + 0.5) / b) - phi((abs(a) - 0.5) / b)) for a, b in zip(v.tolist(), s.tolist())]
    assert np.allclose(symbol_bits(v, s).numpy(), want, rtol=1e-5)


def test_refinement_lowers_the_estimated_cost():
    synth, x, y, means, indexes, table = _toy()
    before = _cost(synth, x, y, means, 0.01)
    out = refine(synth, _reader(x), y.clone(), means, indexes, table, 0.01, 30, x.shape[2:], stride=4)
    assert _cost(synth, x, out, means, 0.01) < before


def test_tiles_are_refined_reproducibly():
    synth, x, y, means, indexes, table = _toy()
    runs = [refine(synth, _reader(x), y.clone(), means, indexes, table, 0.01, 10, x.shape[2:], stride=4, tile=3,
                   halo=1) for _ in range(2)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], y)


def test_latents_that_only_cover_padding_are_left_alone():
    synth, x, y, means, indexes, table = _toy()
    out = refine(synth, _reader(x), y.clone(), means, indexes, table, 0.01, 5, (8, 28), stride=4, tile=2, halo=1)
    assert torch.equal(out[:, :, 2:], y[:, :, 2:]) and not torch.equal(out[:, :, :2], y[:, :, :2])


def test_refined_files_cost_less_and_decode_like_any_other():
    """Real files: the refined one has the lower rate-distortion cost (bpp + lambda * 255^2 * MSE), the same
    header geometry, and is reproducible on one device."""
    from neuralcodec.rate import rate_of_quality

    img = photo(64, 96, 2)
    codec = load_codec(None, "cpu")
    lmbda = float(codec.model.lmbda(torch.tensor([codec.t(rate_of_quality(60))])))

    def cost(data):
        out = np.asarray(neuralcodec.decompress(data, device="cpu")).astype(np.float64)
        return 8 * len(data) / img[..., 0].size + lmbda * ((out - img) ** 2).mean()

    plain = neuralcodec.compress(img, 60, device="cpu")
    assert neuralcodec.compress(img, 60, device="cpu", effort=0) == plain
    refined = neuralcodec.compress(img, 60, device="cpu", effort=2)
    assert neuralcodec.compress(img, 60, device="cpu", effort=2) == refined
    assert cost(refined) < cost(plain)
    keys = ("width", "height", "model", "rate_selector", "y_shape", "z_shape")
    a, b = neuralcodec.info(plain), neuralcodec.info(refined)
    assert [a[k] for k in keys] == [b[k] for k in keys]
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match="effort"):
            neuralcodec.compress(img, 60, effort=bad)


def test_eval_measures_refined_files(tmp_path):
    import json

    from PIL import Image

    from neuralcodec.evaluation.evaluate import evaluate

    Image.fromarray(photo(176, 176, 4)).save(tmp_path / "a.png")  # MS-SSIM needs 161 px
    plain = evaluate(tmp_path, tmp_path / "plain", [40], progress=False)["curves"]["neuralcodec"]
    refined = evaluate(tmp_path, tmp_path / "report", [40], progress=False, effort=1)["curves"]["neuralcodec"]
    rep = json.loads((tmp_path / "report" / "neuralcodec.json").read_text())
    assert rep["effort"] == 1 and len(rep["results"]["bpp"]) == 1
    assert (refined["bpp"], refined["psnr-rgb"]) != (plain["bpp"], plain["psnr-rgb"])  # other files were measured


def test_annealed_rounding_lowers_the_estimated_cost_too():
    """Stochastic Gumbel annealing (the top effort levels) never ends worse than where it started."""
    synth, x, y, means, indexes, table = _toy()
    out = refine(synth, _reader(x), y.clone(), means, indexes, table, 0.01, 30, x.shape[2:], stride=4, method="sga")
    assert _cost(synth, x, out, means, 0.01) < _cost(synth, x, y, means, 0.01)
    with pytest.raises(ValueError, match="ste or sga"):
        refine(synth, _reader(x), y.clone(), means, indexes, table, 0.01, 3, x.shape[2:], method="adam")


def test_effort_replaces_refine_on_the_command_line(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from neuralcodec.cli.main import main

    Image.fromarray(photo(32, 48, 1)).save(tmp_path / "a.png")
    r = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "--refine", "20"])
    assert r.exit_code == 2 and "--effort" in r.output and not (tmp_path / "a.nic").exists()
    r = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "-e", "1", "--backend", "onnx"])
    assert r.exit_code == 2 and "gradients" in r.output
    r = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "-e", "5"])
    assert r.exit_code == 0, r.output
    assert "Gumbel" in CliRunner().invoke(main, ["compress", "--help"]).output
