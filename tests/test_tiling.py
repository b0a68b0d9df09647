"""Tiled transforms (bounded memory on big images) give what one pass gives: no seams, same PSNR."""

import numpy as np
import pytest
import torch

from neuralcodec import pipeline
from neuralcodec.api import load_codec

from conftest import photo, psnr


def edgy(h, w):
    """A photo with hard diagonal edges and stripes crossing every tile border."""
    img = photo(h, w, 9).astype(np.int16)
    yy, xx = np.mgrid[0:h, 0:w]
    img[(xx + 2 * yy) % 37 < 9] = [250, 20, 20]
    img[(xx // 5) % 7 == 0] //= 3
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def small_tiles(monkeypatch):
    monkeypatch.setattr(pipeline, "TILE", 3)  # 48 px tiles: many borders on a small image


def test_tiled_analysis_and_synthesis_match_one_pass(small_tiles):
    codec = load_codec()
    rgb = edgy(150, 190)
    t = codec._t(40000)
    with torch.inference_mode():
        whole = codec.model.analysis(codec._padded(rgb), t)
        tiled = codec.analysis(rgb, t)
        assert tiled.shape == whole.shape
        assert (tiled - whole).abs().max().item() < 1e-4 * max(1.0, whole.abs().max().item())
        y_hat = torch.round(whole)
        one = codec.model.synthesis(y_hat, t)[0, :, :150, :190].clamp(0, 1).mul(255).round()
        one = one.to(torch.uint8).permute(1, 2, 0).numpy()
        many = codec.synthesis([y_hat], t, 150, 190)
    assert many.shape == (150, 190, 3) and many.dtype == np.uint8
    assert np.abs(many.astype(int) - one.astype(int)).max() <= 1


def test_tiled_file_decodes_like_untiled(small_tiles, monkeypatch):
    import neuralcodec

    rgb = edgy(130, 170)
    tiled = np.asarray(neuralcodec.decompress(neuralcodec.compress(rgb, 70)))
    monkeypatch.setattr(pipeline, "TILE", 1000)
    untiled = np.asarray(neuralcodec.decompress(neuralcodec.compress(rgb, 70)))
    assert abs(psnr(tiled, rgb) - psnr(untiled, rgb)) < 0.05
    # no seams: the error along tile borders (every 48 px) is no worse than elsewhere
    err = np.abs(tiled.astype(int) - rgb.astype(int)).mean(axis=(0, 2))
    border = np.array([c for c in range(1, 170) if c % 48 in (0, 47)])
    assert err[border].mean() < 1.5 * err.mean() + 1
