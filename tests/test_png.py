"""The decoder's PNG writer (format/png.py): any reader gets the pixels back, for every mode it takes, in one band
or several (threads), in one IDAT chunk or several; the rest goes to Pillow with its metadata."""

import io
import zlib

import numpy as np
import pytest
from PIL import Image

import neuralcodec
from neuralcodec import api
from neuralcodec.format import png

from conftest import photo


def _read(data: bytes) -> np.ndarray:
    """The pixels, after checking every chunk's CRC and the zlib stream whole (Pillow checks neither fully)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    i, stream, kinds = 8, b"", []
    while i < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        kind, body = data[i + 4:i + 8], data[i + 8:i + 8 + n]
        assert int.from_bytes(data[i + 8 + n:i + 12 + n], "big") == zlib.crc32(kind + body), kind
        kinds.append(kind)
        stream += body if kind == b"IDAT" else b""
        i += 12 + n
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and i == len(data)
    raw = zlib.decompress(stream)  # checks the adler32 of the joined bands
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    channels = {0: 1, 2: 3, 6: 4}[data[25]]
    assert len(raw) == h * (w * channels + 1) and set(raw[::w * channels + 1]) == {4}  # a Paeth filter byte a row
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("shape", [(1, 1), (1, 6, 3), (9, 4, 4), (37, 23), (64, 80, 3), (50, 33, 4)])
def test_pixels_come_back_in_one_band_or_several(shape, monkeypatch):
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    a[: shape[0] // 2] //= 9  # a smooth half and a noisy one: every Paeth branch
    for band in (png.BAND_BYTES, 97, 5):  # one band; several; one row a band
        monkeypatch.setattr(png, "BAND_BYTES", band)
        for level in (1, 3, 6):
            files = [png.encode(a, level, threads) for threads in (1, 2, 3)]
            assert files[0] == files[1] == files[2], (band, level)  # the bands depend on the image only
            assert np.array_equal(_read(files[0]), a), (band, level)


def test_bands_cost_little_and_idat_chunks_split(monkeypatch):
    a = photo(96, 128, 3)
    whole = png.encode(a)
    monkeypatch.setattr(png, "BAND_BYTES", 3000)  # 7 rows a band, each primed with the window before it
    monkeypatch.setattr(png, "IDAT_BYTES", 4000)
    data = png.encode(a, threads=3)
    assert data.count(b"IDAT") > 1 and np.array_equal(_read(data), a)
    assert len(data) < 1.02 * len(whole)  # 14 deflate streams joined instead of one: a little more


def test_adler32_combines_as_zlib_computes_it():
    rng = np.random.default_rng(3)
    for n, m in [(0, 5), (5, 0), (1, 1), (70000, 90001), (5552, 5553)]:
        x, y = rng.bytes(n), rng.bytes(m)
        assert png._combine(zlib.adler32(x), zlib.adler32(y), len(y)) == zlib.adler32(x + y), (n, m)


def test_it_refuses_what_it_cannot_write():
    for bad in (np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3), np.uint16), np.zeros((0, 4, 3), np.uint8),
                np.zeros(5, np.uint8)):
        with pytest.raises(ValueError):
            png.encode(bad)
    with pytest.raises(ValueError, match="level"):
        png.encode(np.zeros((2, 2), np.uint8), level=9)
    assert png.supported("RGB", {}) and png.supported("L", {}) and png.supported("RGBA", {})
    assert not png.supported("P", {}) and not png.supported("RGB", {"icc_profile": b"x"})
    assert not png.supported("RGB", {"exif": b"x"}) and not png.supported("LA", {})


def test_a_decode_writes_it_and_metadata_still_goes_to_pillow(tmp_path):
    data = neuralcodec.compress(photo(48, 64, 4), 50)
    (tmp_path / "a.nic").write_bytes(data)
    written = api.decompress_file(tmp_path / "a.nic", tmp_path / "a.png")
    decoded = np.asarray(neuralcodec.decompress(data))
    assert np.array_equal(_read((tmp_path / "a.png").read_bytes()), decoded)
    assert written.out_bytes == (tmp_path / "a.png").stat().st_size
    img = Image.fromarray(decoded)
    img.info["icc_profile"] = b"\0" * 128  # not png.supported: Pillow writes it, profile kept
    back = Image.open(io.BytesIO(bytes(api._encoded(img, "PNG"))))
    assert back.info.get("icc_profile") == b"\0" * 128 and np.array_equal(np.asarray(back), decoded)

