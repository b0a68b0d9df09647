"""Encoder-side latent refinement: same format, any decoder, never a worse estimated cost."""

import numpy as np
import pytest
import torch

import neuralcodec
from neuralcodec.api import load_codec
from neuralcodec.refine import refine, symbol_bits

from conftest import photo


def _toy(seed=0, stride=4, channels=6):
    torch.manual_seed(seed)
    synth = torch.nn.ConvTranspose2d(channels, 3, 2 * stride, stride, padding=stride // 2)
    y = torch.randn(1, channels, 5, 7) * 3
    x = torch.sigmoid(synth(torch.randn(1, channels, 5, 7) * 3)).detach()
    means, scales = torch.zeros_like(y), torch.full_like(y, 2.0)
    return synth, x, y, means, scales


def _reader(x):
    return lambda rows, cols: x[:, :, rows, cols]


def _cost(synth, x, y, means, scales, lmbda):
    with torch.no_grad():
        v = torch.round(y - means)
        x_hat = synth(v + means).clamp(0, 1)
        return symbol_bits(v, scales).sum().item() / (x.shape[2] * x.shape[3]) + lmbda * 255**2 * (
            (x_hat - x).pow(2).mean().item())


def test_symbol_bits_is_the_discretized_gaussian():
    v, s = torch.tensor([0.0, 1.0, -3.0]), torch.tensor([1.0, 1.0, 2.0])
    from math import erf, log2, sqrt

    phi = lambda u: 0.5 * (1 + erf(u / sqrt(2)))  # noqa: E731
    want = [-log2(phi((abs(a) + 0.5) / b) - phi((abs(a) - 0.5) / b)) for a, b in zip(v.tolist(), s.tolist())]
    assert np.allclose(symbol_bits(v, s).numpy(), want, rtol=1e-5)


@pytest.mark.parametrize("tile", [64, 3])  # one window, and tiles with halos
def test_refinement_lowers_the_estimated_cost(tile):
    synth, x, y, means, scales = _toy()
    with torch.no_grad():
        before = _cost(synth, x, y, means, scales, 0.01)
    out = refine(synth, _reader(x), y, means, scales, 0.01, 30, x.shape[2:], stride=4, tile=tile, halo=1)
    assert _cost(synth, x, out, means, scales, 0.01) < before
    assert torch.equal(refine(synth, _reader(x), y, means, scales, 0.01, 30, x.shape[2:], stride=4, tile=tile, halo=1),
                       out)


def test_latents_that_only_cover_padding_are_left_alone():
    synth, x, y, means, scales = _toy()
    out = refine(synth, _reader(x), y, means, scales, 0.01, 5, (8, 28), stride=4, tile=2, halo=1)
    assert torch.equal(out[:, :, 2:], y[:, :, 2:]) and not torch.equal(out[:, :, :2], y[:, :, :2])


def test_refined_files_decode_anywhere_and_are_reproducible():
    img = photo(48, 80, 2)
    plain = neuralcodec.compress(img, 60)
    assert neuralcodec.compress(img, 60, refine=0) == plain
    refined = neuralcodec.compress(img, 60, refine=4)
    assert refined != plain and neuralcodec.compress(img, 60, refine=4) == refined
    a, b = neuralcodec.info(plain), neuralcodec.info(refined)
    assert [a[k] for k in ("width", "height", "model", "rate_selector", "y_shape")] == [b[k] for k in ("width", "height", "model", "rate_selector", "y_shape")]
    out = np.asarray(neuralcodec.decompress(refined))
    assert out.shape == (48, 80, 3)
    codec = load_codec(None, "cpu")
    assert codec.refinable
    with pytest.raises(ValueError, match="refine"):
        neuralcodec.compress(img, 60, refine=-1)


def test_eval_measures_refined_files(tmp_path):
    import json

    from PIL import Image

    from neuralcodec.evaluate import evaluate

    Image.fromarray(photo(176, 176, 4)).save(tmp_path / "a.png")  # MS-SSIM needs 161 px
    evaluate(tmp_path, tmp_path / "report", [40], progress=False, refine=2)
    rep = json.loads((tmp_path / "report" / "neuralcodec.json").read_text())
    assert rep["refine_steps"] == 2 and len(rep["results"]["bpp"]) == 1
