"""PNG files of decoded images, written on several cores (numpy and zlib; no torch).

A decoded Kodak image took Pillow 0.06-0.09 s to write as PNG (zlib level 3 on one core: its adaptive row
filters, then deflate), 7-9 % of a one-image `neuralcodec decompress` call. This writer filters every row with
PNG's Paeth predictor in numpy and deflates the rows in bands of about BAND_BYTES, spread over threads: each band
is its own deflate stream primed with the 32 KiB of filtered bytes before it and closed with a sync flush, so the
bands join into one zlib stream that compresses as one would (as pigz does). The bands depend on the image only,
so the file's bytes do not depend on the number of threads. Measured on decoded Kodak images (`python
bench/experiments/decode_tail.py`; bench/README.md, session 28 under "Speed beside AVIF and JPEG XL"): about half
Pillow's time on two threads, for about Pillow's bytes.

Only what a decoder writes goes through it: 8-bit L, RGB or RGBA images without metadata (``supported``); the
rest (ICC profiles, EXIF, XMP, transparency, other modes) is Pillow's. Any PNG reader reads the files.
"""

from __future__ import annotations

import struct
import threading
import zlib

import numpy as np

COLOUR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, truecolour, truecolour with alpha)
BAND_BYTES = 1 << 18  # filtered bytes per band (whole rows): a Kodak image is 5 bands, an 8192^2 RGB one 820
WINDOW = 1 << 15  # deflate's window: each band is primed with this much of the bytes before it
IDAT_BYTES = 1 << 30  # largest IDAT chunk written (the format allows 2^31 - 1)
LEVEL = 3  # zlib level (as the decoder's Pillow writes had it: Kodak 766 KB in 0.06 s; Pillow's default 6: 777 KB in 0.13 s)
ZLIB_HEADER = {1: b"\x78\x01", 2: b"\x78\x5e", 3: b"\x78\x5e", 4: b"\x78\x5e", 5: b"\x78\x5e", 6: b"\x78\x9c"}
PILLOW_WRITES = ("icc_profile", "exif", "xmp", "XML:com.adobe.xmp", "transparency", "dpi", "gamma")  # from info


def supported(mode: str, info: dict) -> bool:
    """Whether ``encode`` writes an image of Pillow mode ``mode`` with ``info`` whole (else use Pillow)."""
    return mode in ("L", "RGB", "RGBA") and not any(k in info for k in PILLOW_WRITES)


def _filtered(image: np.ndarray, channels: int, r0: int, r1: int) -> bytes:
    """Rows r0..r1 of ``image`` (H, W * channels) uint8 as PNG rows: filter type 4 (Paeth) and the bytes
    x - predictor(left a, above b, upper left c) mod 256, with a, b, c = 0 outside the image."""
    n, width = r1 - r0, image.shape[1]
    padded = np.zeros((n + 1, width + channels), np.int16)  # the row above and a zero pixel on the left
    padded[1:, channels:] = image[r0:r1]
    if r0 > 0:
        padded[0, channels:] = image[r0 - 1]
    x, a, b, c = padded[1:, channels:], padded[1:, :-channels], padded[:-1, channels:], padded[:-1, :-channels]
    bc, ac = b - c, a - c
    pc = np.abs(bc + ac)  # |p - c| with p = a + b - c
    pa, pb = np.abs(bc, out=bc), np.abs(ac, out=ac)  # |p - a|, |p - b|
    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    out = np.empty((n, width + 1), np.uint8)
    out[:, 0] = 4
    np.subtract(x, pred, out=pred)
    out[:, 1:] = pred  # mod 256 (numpy wraps the int16 -> uint8 cast)
    return out.tobytes()


def _band(image: np.ndarray, channels: int, r0: int, r1: int, last: bool, level: int) -> tuple[bytes, int, int]:
    """Rows r0..r1 filtered and deflated: (raw deflate bytes ending in a sync flush, or in the stream's end for
    the ``last`` band; the adler32 of the band's filtered bytes; their length). The deflate stream starts from the
    WINDOW filtered bytes before r0, as the one stream through all rows would have them."""
    zdict = b""
    if r0 > 0:
        before = -(-WINDOW // (image.shape[1] + 1))  # rows holding the window
        zdict = _filtered(image, channels, max(0, r0 - before), r0)[-WINDOW:]
    z = zlib.compressobj(level, zlib.DEFLATED, -15, zdict=zdict) if zdict else zlib.compressobj(level, zlib.DEFLATED, -15)
    raw = _filtered(image, channels, r0, r1)
    data = z.compress(raw) + z.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
    return data, zlib.adler32(raw), len(raw)


def _combine(a: int, b: int, length_b: int) -> int:
    """adler32 of A + B from adler32(A), adler32(B) and len(B) (zlib's adler32_combine)."""
    mod = 65521
    a1, a2 = a & 0xFFFF, a >> 16
    b1, b2 = b & 0xFFFF, b >> 16
    s1 = (a1 + b1 - 1) % mod
    s2 = (a2 + b2 + (length_b % mod) * (a1 - 1)) % mod
    return (s2 << 16) | s1


def _chunk(kind: bytes, *pieces: bytes) -> list[bytes]:
    """A PNG chunk as pieces to join: length, type, the data pieces as they are (no copy), CRC."""
    crc = zlib.crc32(kind)
    for p in pieces:
        crc = zlib.crc32(p, crc)
    return [struct.pack(">I", sum(len(p) for p in pieces)), kind, *pieces, struct.pack(">I", crc)]


def encode(pixels: np.ndarray, level: int = LEVEL, threads: int = 1) -> bytes:
    """The PNG file of ``pixels`` (H, W) or (H, W, C) uint8 with C = 1, 3 or 4, deflated at zlib ``level``
    (1-6), its bands of rows on up to ``threads`` threads (the same bytes on any number).

    >>> import io; from PIL import Image
    >>> a = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    >>> bool((np.asarray(Image.open(io.BytesIO(encode(a, threads=2)))) == a).all())
    True
    """
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in COLOUR_TYPES):
        raise ValueError(f"a PNG of (H, W[, 1|3|4]) uint8 pixels, not {pixels.dtype} {pixels.shape}")
    if type(level) is not int or level not in ZLIB_HEADER:
        raise ValueError(f"zlib level 1-6, not {level!r}")
    h, w = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if h < 1 or w < 1 or h >= 2**31 or w >= 2**31:
        raise ValueError(f"a PNG is 1 to 2^31 - 1 pixels a side, not {w}x{h}")
    image = np.ascontiguousarray(pixels).reshape(h, w * channels)
    rows = max(1, BAND_BYTES // (w * channels + 1))
    starts = list(range(0, h, rows))
    out: list = [None] * len(starts)

    def work(first: int) -> None:
        try:
            for i in range(first, len(starts), workers):
                out[i] = _band(image, channels, starts[i], min(h, starts[i] + rows), i == len(starts) - 1, level)
        except BaseException as e:  # noqa: BLE001 - raised in the caller's thread below
            out[first] = e

    workers = max(1, min(int(threads), len(starts)))
    helpers = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(1, workers)]
    for t in helpers:
        t.start()
    work(0)
    for t in helpers:
        t.join()
    for r in out:
        if isinstance(r, BaseException):
            raise r
    check = out[0][1]
    for _, c, n in out[1:]:
        check = _combine(check, c, n)
    stream = [ZLIB_HEADER[level], *(d for d, _, _ in out if d), struct.pack(">I", check)]
    pieces = [b"\x89PNG\r\n\x1a\n"] + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, COLOUR_TYPES[channels], 0, 0, 0))
    run, size = [], 0  # the stream's pieces (a band's deflate bytes each) in IDAT chunks of at most IDAT_BYTES
    for p in stream:
        if run and size + len(p) > IDAT_BYTES:
            pieces += _chunk(b"IDAT", *run)
            run, size = [], 0
        run.append(p)
        size += len(p)
    pieces += _chunk(b"IDAT", *run) + _chunk(b"IEND")
    return b"".join(pieces)  # the only copy of the stream (a big image's file is held twice only here)
