"""Shared fixtures: small synthetic photos made on the fly, and the shipped weights."""

import os
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image

# the ONNX backend's bundles of this test session, never the user's cache (built fresh: what a new install does)
os.environ.setdefault("NEURALCODEC_CACHE_DIR", tempfile.mkdtemp(prefix="neuralcodec-test-cache-"))


@pytest.fixture(autouse=True)
def _library_process():
    """CLI tests run the command line in this process; what it sets for a process it owns (settings.
    command_line_process) is undone after each test, so no later test depends on which ran before it."""
    blas = os.environ.get("OPENBLAS_NUM_THREADS")
    yield
    if sys.modules.get("openvino.tools.ovc", 0) is None:
        del sys.modules["openvino.tools.ovc"]
    if blas is None:
        os.environ.pop("OPENBLAS_NUM_THREADS", None)


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A small natural-looking RGB image: smooth gradients, edges and some texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([
        120 + 80 * np.sin(xx / 9 + seed) * np.cos(yy / 13),
        100 + 60 * np.cos((xx + yy) / 17),
        90 + 50 * np.sin(yy / 7 - seed),
    ], -1)
    img[(xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(h, w) / 3) ** 2] += 60
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def photo_files(d, n: int, h: int, w: int):
    """A directory ``d`` of ``n`` PNG photos of h x w (made on the fly); returns ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(photo(h, w, i)).save(d / f"{i}.png")
    return d


@pytest.fixture(scope="session")
def rgb64():
    return photo(64, 96)


@pytest.fixture
def photo_dir(tmp_path):
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(photo(40, 56, 1)).save(d / "a.png")
    Image.fromarray(photo(33, 47, 2)).save(d / "b.jpg", quality=95)
    Image.fromarray(photo(30, 30, 3)).save(d / "sub" / "c.webp", lossless=True)
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (d / "notes.txt").write_text("not an image")
    return d


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes 20 s or more (deselect with -m 'not slow')")
