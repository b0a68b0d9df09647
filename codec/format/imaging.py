"""Pillow images <-> the RGB planes the model codes, keeping the original mode and a lossless alpha plane."""

from __future__ import annotations

import functools
import importlib
import threading
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from neuralcodec.errors import NIC_INPUT, NeuralcodecError
from neuralcodec.format.bitstream import (ALPHA_MODES, ALPHA_TAG, ALPHA_WEBP_TAG, CHANNELS, DEFAULT_MAX_PIXELS,
                                          MAGIC)

READ_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".ppm", ".pgm", ".pbm", ".pnm")


class ImageError(NeuralcodecError, ValueError):
    """The input image cannot be coded (unsupported mode or depth); the message says why."""


METADATA_TAGS = {"icc_profile": b"iCCP", "exif": b"eXIF", "xmp": b"xMPT"}  # ancillary chunks, as Pillow names them


@dataclass
class Planes:
    rgb: np.ndarray  # HxWx3 uint8
    mode: str  # the original Pillow mode, restored on decode
    channels: int
    alpha: np.ndarray | None  # HxW uint8, carried losslessly
    metadata: dict = field(default_factory=dict)  # icc_profile, exif, xmp: bytes, carried as they are


def read_metadata(info: dict) -> dict[str, bytes]:
    """The ICC profile, EXIF and XMP of an opened image (``img.info``), as bytes."""
    out = {}
    xmp = info.get("xmp", info.get("XML:com.adobe.xmp"))
    for key, value in (("icc_profile", info.get("icc_profile")), ("exif", info.get("exif")), ("xmp", xmp)):
        if isinstance(value, str):
            value = value.encode("utf-8")
        if isinstance(value, (bytes, bytearray)) and value:
            out[key] = bytes(value)
    return out


def metadata_options(info: dict, fmt: str) -> dict:
    """Pillow ``save`` options writing the metadata in ``info`` where the format ``fmt`` can hold it."""
    meta = read_metadata(info)
    opts = {}
    if fmt in ("PNG", "JPEG", "WEBP", "TIFF") and "icc_profile" in meta:
        opts["icc_profile"] = meta["icc_profile"]
    if fmt in ("PNG", "JPEG", "WEBP", "TIFF") and "exif" in meta:
        opts["exif"] = meta["exif"]
    if "xmp" in meta:
        if fmt in ("JPEG", "WEBP"):
            opts["xmp"] = meta["xmp"]
        elif fmt == "PNG":
            from PIL.PngImagePlugin import PngInfo

            png = PngInfo()
            png.add_itxt("XML:com.adobe.xmp", meta["xmp"].decode("utf-8", "replace"))
            opts["pnginfo"] = png
    return opts


def split(img: Image.Image) -> Planes:
    """The colour planes to code, the original mode, and the alpha plane if the image has transparency."""
    metadata = read_metadata(img.info)
    if img.mode.startswith("I;16") or img.mode == "I":  # 16-bit grayscale (PGM opens as I): coded at 8 bits,
        v = np.asarray(img).astype(np.int64)            # as Pillow reads 16-bit colour
        if img.mode == "I" and v.size and (v.min() < 0 or v.max() > 65535):
            raise ImageError("unsupported image mode 'I' with values beyond 16 bits; convert to 8-bit first")
        img = Image.fromarray(((v * 255 + 32767) // 65535).astype(np.uint8), "L")
    mode = img.mode
    if mode == "P" and "transparency" in img.info:
        mode = "PA"
    if mode not in CHANNELS:
        raise ImageError(f"unsupported image mode {img.mode!r} (32-bit and float images are not supported; "
                         "convert to 8-bit RGB first)")
    alpha = None
    if mode in ALPHA_MODES:
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        rgb = np.asarray(rgba.convert("RGB"))
    else:  # an RGB image is read directly: no converted copy (big images)
        rgb = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    return Planes(np.ascontiguousarray(rgb), mode, CHANNELS[mode], alpha, metadata)


def merge(rgb: np.ndarray, mode: str, alpha: np.ndarray | None) -> Image.Image:
    """Inverse of :func:`split`: an image in the original mode (palette images get an adaptive palette)."""
    img = Image.fromarray(rgb, "RGB")
    if alpha is not None:
        img.putalpha(Image.fromarray(alpha, "L"))
    if mode in ("RGB", "RGBA"):
        return img
    if mode == "L":
        return img.convert("L")
    if mode == "LA":
        return img.convert("LA")
    if mode == "1":
        return img.convert("L").point(lambda v: 255 if v >= 128 else 0).convert("1", dither=Image.Dither.NONE)
    if mode == "P":
        return img.quantize(256, dither=Image.Dither.NONE)
    if mode == "PA":
        return img.convert("RGBA")  # a palette cannot hold lossy colours with exact alpha: decode as RGBA
    return img.convert(mode)  # CMYK, YCbCr


WEBP_MAX_SIDE = 16383  # WebP's largest image side; a bigger alpha plane is zlib-coded


def pack_alpha(alpha: np.ndarray) -> tuple[bytes, bytes]:
    """(tag, payload) of the alpha plane: the smaller of WebP lossless (``ALPW``, cwebp's own alpha coding:
    spatial prediction and entropy coding, 2-3x smaller than zlib on real transparency) and zlib (``ALPH``)."""
    import io

    a = np.ascontiguousarray(alpha, np.uint8)
    best = (ALPHA_TAG, zlib.compress(a.tobytes(), 9))
    if a.size and max(a.shape) <= WEBP_MAX_SIDE:
        buf = io.BytesIO()
        Image.fromarray(a, "L").convert("RGB").save(buf, format="WEBP", lossless=True, quality=75, method=4,
                                                     exact=True)
        if buf.tell() < len(best[1]):
            best = (ALPHA_WEBP_TAG, buf.getvalue())
    return best


def unpack_alpha(tag: bytes, data: bytes, height: int, width: int) -> np.ndarray:
    """The alpha plane of an ``ALPH`` (zlib) or ``ALPW`` (WebP lossless) chunk; ValueError if it is not one."""
    if tag == ALPHA_WEBP_TAG:
        return _unpack_webp_alpha(data, height, width)
    size = height * width
    d = zlib.decompressobj()
    try:
        raw = d.decompress(data, size + 1)  # bounded: a zlib bomb cannot inflate past the image size
    except zlib.error as e:
        raise ValueError(f"corrupt alpha chunk ({e})") from None
    if len(raw) != size or d.unconsumed_tail:
        raise ValueError("alpha chunk does not match the image size")
    if not d.eof or d.unused_data:
        raise ValueError("alpha chunk is not one whole zlib stream")
    return np.frombuffer(raw, np.uint8).reshape(height, width)


def _unpack_webp_alpha(data: bytes, height: int, width: int) -> np.ndarray:
    import io

    _register_readers()
    try:
        with _pillow_limit:  # the size is checked against the file's own (already limited) one, not Pillow's
            old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                im = Image.open(io.BytesIO(data), formats=["WEBP"])
            finally:
                Image.MAX_IMAGE_PIXELS = old
        with im:
            if im.size != (width, height):  # checked on the header, before any pixel is decoded
                raise ValueError(f"alpha chunk is {im.size[0]}x{im.size[1]}, the image {width}x{height}")
            im.load()
            rgb = np.asarray(im.convert("RGB"))
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder complaint about hostile bytes
        raise ValueError(f"corrupt alpha chunk ({type(e).__name__}: {e})") from None
    return np.ascontiguousarray(rgb[..., 1])


# Formats read (by content, whatever the extension): those whose header gives the size before any pixel is
# decoded. Not ICO/ICNS, which decode embedded images while opening.
OPEN_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "PPM")  # JPEG includes multi-picture (MPO) files
_pillow_limit = threading.Lock()


@functools.cache
def _register_readers() -> None:
    """Register the plugins of OPEN_FORMATS alone. ``Image.init()`` imports every plugin Pillow has (~0.045 s of a
    one-image call); ``Image.open`` still calls it itself for a format in its list that is not registered."""
    for name in ("Png", "Jpeg", "WebP", "Tiff", "Bmp", "Ppm"):
        try:
            importlib.import_module(f"PIL.{name}ImagePlugin")
        except ImportError:
            pass


def open_image(path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image file; errors become ImageError with a one-line reason.

    The codec's own pixel limit applies, checked on the header before decoding: Pillow's decompression-bomb
    limit is raised above it while the header is read, then restored."""
    try:
        im = _open_header(path, max_pixels)
        with im:
            if im.width * im.height > max_pixels:
                raise ImageError(f"image of {im.width}x{im.height} exceeds the {max_pixels}-pixel limit")
            im.load()
            return im
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        if _starts_with(path, MAGIC):
            raise ImageError("a .nic file, not an image: it is decoded, not encoded", NIC_INPUT) from None
        raise ImageError("not a PNG, JPEG, WebP, TIFF, BMP or PPM/PGM image") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot read image: {e}") from None


def _open_header(path, max_pixels: int) -> Image.Image:
    """The image file opened, its header read and no pixel decoded, in OPEN_FORMATS only, with Pillow's
    decompression-bomb limit raised above ``max_pixels`` while it reads (then restored)."""
    _register_readers()
    with _pillow_limit:
        old = Image.MAX_IMAGE_PIXELS
        if old is not None:
            Image.MAX_IMAGE_PIXELS = max(old, 2 * max_pixels)  # warns only far beyond our own limit
        try:
            return Image.open(path, formats=OPEN_FORMATS)
        finally:
            Image.MAX_IMAGE_PIXELS = old


def image_size(path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int] | None:
    """An image file's (width, height) from its header alone, read as :func:`open_image` reads it; None where
    that would fail on the header (not an image, a format not read, over ``max_pixels``)."""
    try:
        with _open_header(path, max_pixels) as im:
            size = im.size
    except Exception:  # noqa: BLE001 - whatever the header's trouble, open_image reports it in the file's own run
        return None
    return size if size[0] * size[1] <= max_pixels else None


def _starts_with(src, prefix: bytes) -> bool:
    """Whether the file (a path or a seekable binary file) begins with ``prefix``; False if unreadable."""
    try:
        if hasattr(src, "read"):
            pos = src.tell()
            head = src.read(len(prefix))
            src.seek(pos)
            return head == prefix
        with open(src, "rb") as f:
            return f.read(len(prefix)) == prefix
    except (OSError, ValueError):
        return False
