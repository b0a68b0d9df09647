"""The Python API: ``compress(image, quality) -> bytes``, ``decompress(bytes) -> image``, ``info(bytes)``.

The CLI is a thin layer over these functions.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from neuralcodec.format import bitstream
from neuralcodec.format import imaging, png
from neuralcodec.format.bitstream import DEFAULT_MAX_PIXELS, MAX_TILE, MIN_TILE, Container, FormatError, Header
from neuralcodec.format.imaging import METADATA_TAGS
from neuralcodec.errors import GPU_OUT_OF_MEMORY, NeuralcodecError
from neuralcodec.rate import quality_of_rate
from neuralcodec.settings import DecodeSettings, EncodeSettings



class DecodeError(NeuralcodecError, ValueError):
    """A `.nic` file cannot be decoded; the message says why in one line."""


def _settings(cls, settings, options: dict):
    """``settings`` as given, or made from keyword ``options`` (not both)."""
    if settings is None:
        return cls(**options)
    if not isinstance(settings, cls):
        raise TypeError(f"settings must be {cls.__name__}, got {type(settings).__name__}")
    return dataclasses.replace(settings, **options) if options else settings


def load_codec(weights: str | None = None, device: str = "auto", precision: str = "fp32", backend: str = "torch"):
    """The loaded codec for ``weights`` (a shipped name or a path) on ``device``, cached per process;
    ``precision`` of the transforms: fp32, fp16 (a GPU option), bf16 (the analysis on OpenVINO, ONNX backend) or
    auto (bf16 where it runs natively, else fp32: ``EncodeSettings``); ``backend``: torch, onnx (ONNX Runtime on
    the CPU: no torch imported), or auto (onnx where it can run, else torch: settings.resolve_backend; a model
    whose ONNX export fails stays on torch)."""
    if backend != "auto":
        return _load_codec(weights, device, _precision(precision, backend), backend)
    from neuralcodec.settings import resolve_backend

    if resolve_backend(EncodeSettings(device=device, precision=precision)) == "onnx":
        from neuralcodec.pipeline.onnx_backend import BackendError

        try:
            return _load_codec(weights, device, _precision(precision, "onnx"), "onnx")
        except BackendError:
            if precision == "bf16":  # asked for: only the ONNX backend (OpenVINO) has it
                raise
    return _load_codec(weights, device, _precision(precision, "torch"), "torch")


def _precision(precision: str, backend: str) -> str:
    """``precision`` with auto resolved on ``backend`` (so that equal codecs share one cache entry): bf16 on the
    ONNX backend where the analysis can run so (``onnx_backend.bf16_analysis_available``), else fp32."""
    if precision != "auto":
        return precision
    if backend == "onnx":
        from neuralcodec.pipeline import onnx_backend

        return "bf16" if onnx_backend.bf16_analysis_available() else "fp32"
    return "fp32"


def _codec_for(s):
    """The codec that ``s`` (Encode- or DecodeSettings) asks for."""
    from neuralcodec.settings import resolve_backend

    # torch where the settings need it (effort, fp16, a GPU); else as asked (auto falls back where export fails).
    # Decoders never run the analysis: they share the encoder's codec (auto) instead of loading their own
    backend = "torch" if resolve_backend(s) == "torch" else s.backend
    precision = s.precision if isinstance(s, EncodeSettings) or s.precision != "fp32" else "auto"
    return load_codec(s.weights, s.device, precision, backend)


@functools.lru_cache(maxsize=4)
def _load_codec(weights, device, precision, backend):
    from neuralcodec.pipeline.codec import Codec
    from neuralcodec.zoo import weights_io

    w = weights_io.load(weights)
    if backend == "onnx":
        from neuralcodec.pipeline import onnx_backend

        spec, transforms = onnx_backend.load(w, "bf16" if precision == "bf16" else "fp32")
        return Codec(w, spec, transforms)
    from neuralcodec.pipeline.spec import ModelSpec
    from neuralcodec.pipeline.torch_backend import TorchTransforms

    model = weights_io.build_model(w)
    spec = ModelSpec.of(model, w.arch)
    if precision == "bf16":
        raise ValueError("precision bf16 runs the analysis on the ONNX backend (OpenVINO), not on torch")
    return Codec(w, spec, TorchTransforms(model, spec, device, "fp16" if precision == "fp16" else "fp32"))


def _as_image(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise imaging.ImageError(f"arrays must be uint8, got {image.dtype}")
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 2, 3, 4))):
            raise imaging.ImageError(f"arrays must be HxW or HxWxC with C 1..4 (gray, gray+alpha, RGB, RGBA), "
                                     f"got shape {image.shape}")
        return Image.fromarray(image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image)
    return imaging.open_image(image)


def compress(image, quality: float | None = None, *, settings: EncodeSettings | None = None, **options) -> bytes:
    """Compress a Pillow image, a uint8 array (HxW or HxWx3/4) or an image path; quality 0..100.

    Options are the fields of :class:`EncodeSettings` (weights, device, tile, precision, effort, ...), as keywords or
    as one ``settings`` object (keywords then override its fields)::

        data = neuralcodec.compress("photo.png", 60)
        data = neuralcodec.compress(img, settings=EncodeSettings(quality=60, effort=3))
    """
    if quality is not None:  # default: the settings' quality, else DEFAULT_QUALITY
        options["quality"] = quality
    return _compress_planes(imaging.split(_as_image(image)), _settings(EncodeSettings, settings, options))


def _compress_planes(planes: imaging.Planes, s: EncodeSettings) -> bytes:
    """The file of ``planes``; with a target, of the quality that meets it (TargetError if none does)."""
    _codec_for(s).note_image()
    if s.target is None:
        return _encode(planes, s)
    reached = _search(planes, s)
    if not reached.met:
        from neuralcodec.ratecontrol import TargetError

        raise TargetError(f"target {s.target.describe()} is out of reach: the nearest is "
                          f"{s.target.describe(reached.value)} at quality {reached.quality:g}", reached)
    return reached.data


def compress_to_target(image, settings: EncodeSettings):
    """The file meeting ``settings.target`` (a ratecontrol.Target) and how: a ``ratecontrol.Reached`` with the
    data, the quality found, the value reached and whether the target is met (else the nearest file)."""
    if settings.target is None:
        raise ValueError("settings.target is not set")
    planes = imaging.split(_as_image(image))
    _codec_for(settings).note_image()
    return _search(planes, settings)


def _search(planes: imaging.Planes, s: EncodeSettings):
    from neuralcodec import ratecontrol

    h, w = planes.rgb.shape[:2]
    codec = _codec_for(s)

    def measure(q: float):
        data = _encode(planes, dataclasses.replace(s, quality=q, target=None))
        if s.target.kind == "size":
            return data, float(len(data))
        if s.target.kind == "bpp":
            return data, 8 * len(data) / (h * w)
        c = bitstream.unpack(data)
        mse = np.mean((codec.decode(c.header, c.chunks).astype(np.float64) - planes.rgb) ** 2)
        return data, float(10 * np.log10(255**2 / max(mse, 1e-10)))

    return ratecontrol.search(measure, s.target, codec.variable_rate, start=s.quality)


def _encode(planes: imaging.Planes, s: EncodeSettings) -> bytes:
    from neuralcodec.pipeline import deblock
    from neuralcodec.rate import rate_of_quality

    h, w = planes.rgb.shape[:2]
    if h * w > DEFAULT_MAX_PIXELS:
        raise imaging.ImageError(f"image of {w}x{h} exceeds the {DEFAULT_MAX_PIXELS}-pixel limit")
    codec = _codec_for(s)
    per_latent = codec.grid  # pixels per latent of y
    if max(max(shape) for shape in codec.header_shapes(h, w)) > 65535:  # after padding to the model's stride
        raise imaging.ImageError(f"image of {w}x{h} is too wide or tall for {codec.model_id}'s latents (16-bit "
                                 f"shapes: sides up to {65535 // (codec.stride // per_latent) * codec.stride} pixels)")
    rate = rate_of_quality(s.quality) if codec.variable_rate else 0  # a fixed-rate model has one rate
    if s.tile is not None and not MIN_TILE * per_latent <= s.tile <= MAX_TILE * per_latent:
        raise ValueError(f"tile must be within {MIN_TILE * per_latent}..{MAX_TILE * per_latent} pixels, got {s.tile}")
    chunks, shapes = codec.encode(planes.rgb, rate, None if s.tile is None else -(-s.tile // per_latent), s.effort)
    flags = 0
    if s.deblock and codec.deblocks:  # decoders filter across the latent grid; below quality 65 ramps first
        flags = bitstream.FLAG_DEBLOCK | (bitstream.FLAG_RAMP if deblock.ramp_wanted(codec.grid, rate, h, w) else 0)
    if planes.alpha is not None:
        tag, payload = imaging.pack_alpha(planes.alpha)
        chunks[tag] = payload
        flags |= bitstream.FLAG_ALPHA
    if not s.strip:
        for key, tag in METADATA_TAGS.items():
            if planes.metadata.get(key):
                chunks[tag] = planes.metadata[key]
    header = Header(codec.model_id, codec.weights.digest, rate, w, h, planes.channels, 8, planes.mode, flags,
                    shapes["y_shape"], shapes["z_shape"], shapes["tile"], shapes["halo"])
    return bitstream.pack(Container(header, chunks))


def read_container(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Container:
    try:
        return bitstream.unpack(data, max_pixels)
    except FormatError as e:
        raise DecodeError(str(e), e.reason) from None


def decompress(data: bytes, *, settings: DecodeSettings | None = None, **options) -> Image.Image:
    """Decode a `.nic` file's bytes to a Pillow image in the original mode (a palette with transparency comes
    back as RGBA, 16-bit grayscale as 8-bit L); DecodeError if it is not valid.

    Options are the fields of :class:`DecodeSettings` (weights, device, max_pixels, perceptual, precision), as
    keywords or as one ``settings`` object. Without ``weights``, the shipped weights whose digest the file
    names are used; with ``perceptual``, their shipped GAN-fine-tuned decoder (same latents, sharper texture)."""
    return _decompress(data, _settings(DecodeSettings, settings, options))[0]


def _decompress(data: bytes, s: DecodeSettings) -> tuple[Image.Image, np.ndarray]:
    """``decompress``, and the decoder's HxWx3 pixels the image was made from (its pixels where it is RGB)."""
    from neuralcodec.coding.entropy import EntropyError

    weights, perceptual = s.weights, s.perceptual
    c = read_container(data, s.max_pixels)
    h = c.header
    if weights is None:  # the shipped weights that made the file, else the default (which refuses it clearly)
        from neuralcodec.zoo import catalog

        if perceptual:
            weights = catalog.perceptual_for(h.weights_digest)
            if weights is None:
                raise DecodeError(f"no perceptual decoder ships for the weights of this file "
                                  f"({h.model_id}, {h.weights_digest.hex()[:16]})")
        else:
            weights = catalog.shipped().get(h.weights_digest)
    codec = _codec_for(dataclasses.replace(s, weights=weights, perceptual=False))
    try:
        alpha_tag = next((t for t in c.chunks if t in bitstream.ALPHA_TAGS), None)
        alpha = imaging.unpack_alpha(alpha_tag, c.chunks[alpha_tag], h.height, h.width) if h.has_alpha else None
        rgb = codec.decode(h, c.chunks, s.deblock)
    except (FormatError, EntropyError, ValueError) as e:
        raise DecodeError(str(e), getattr(e, "reason", None)) from None
    except (MemoryError, RuntimeError) as e:  # torch reports an exhausted GPU as a RuntimeError
        if not isinstance(e, MemoryError) and "out of memory" not in str(e).lower():
            raise
        raise DecodeError(f"out of memory decoding a {h.width}x{h.height} image on {codec.device}",
                          GPU_OUT_OF_MEMORY if codec.device.type == "cuda" else None) from None
    img = imaging.merge(rgb, h.mode, alpha)
    for key, tag in METADATA_TAGS.items():  # carried as they came; unknown ancillary chunks are skipped
        if tag in c.chunks:
            img.info[key] = c.chunks[tag]
    return img, rgb


def info(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """The header and chunk sizes of a `.nic` file, as plain JSON-able values (no model is loaded)."""
    c = read_container(data, max_pixels)
    h = c.header
    return {
        "format_version": h.version, "model": h.model_id, "weights_digest": h.weights_digest.hex(),
        "quality": quality_of_rate(h.rate), "rate_selector": h.rate, "width": h.width, "height": h.height,
        "channels": h.channels, "bit_depth": h.bit_depth, "mode": h.mode, "alpha": h.has_alpha, "deblock": h.deblock,
        "ramp": h.ramp,
        "y_shape": list(h.y_shape), "z_shape": list(h.z_shape), "tile": h.tile, "halo": h.halo,
        "chunks": {t.decode(): len(p) for t, p in c.chunks.items()}, "bytes": len(data),
        "bpp": round(8 * len(data) / (h.width * h.height), 5),
    }


class Written(NamedTuple):
    """What a ``*_file`` call wrote: bytes, the image's pixels, and a note (e.g. the quality a target found)."""

    out_bytes: int
    pixels: int
    note: str = ""


def compress_file(src: Path, dst: Path, settings: EncodeSettings = EncodeSettings()) -> Written:
    """Compress one image file to ``dst`` atomically. With a target that no quality meets, the nearest file is
    written and TargetError raised (its ``reached`` says what was written)."""
    from neuralcodec.format.fileio import write_atomic

    img = imaging.open_image(src)
    pixels = img.width * img.height
    planes = imaging.split(img)
    del img  # a big photo is held once, as the planes
    _codec_for(settings).note_image()
    if settings.target is None:
        data = _encode(planes, settings)
        write_atomic(dst, data)
        return Written(len(data), pixels)
    from neuralcodec.ratecontrol import TargetError

    reached = _search(planes, settings)
    write_atomic(dst, reached.data)
    codec = _codec_for(settings)
    at = (f"at quality {reached.quality:g}" if codec.variable_rate else
          f"at the one rate of {codec.model_id} (a fixed-rate model; the flagship, modhp, is variable-rate)")
    if not reached.met:
        raise TargetError(f"target {settings.target.describe()} is out of reach: wrote the nearest, "
                          f"{settings.target.describe(reached.value)} {at}", reached)
    note = (f"quality {reached.quality:g} reached {settings.target.describe(reached.value)} "
            f"({reached.encodes} encodes)" if codec.variable_rate else
            f"the one rate of {codec.model_id} meets the target (a fixed-rate model)")
    return Written(len(reached.data), pixels, note)


def decompress_file(src: Path, dst: Path, settings: DecodeSettings = DecodeSettings()) -> Written:
    """Decode one `.nic` file to an image file (format from ``dst``'s extension, PNG without one) atomically;
    returns (bytes written, pixels)."""
    from neuralcodec.format.fileio import write_atomic

    suffix = Path(dst).suffix.lower()
    fmt = WRITE_FORMATS.get(suffix or ".png")
    if fmt is None:  # not every format Pillow writes keeps the image whole (ico resizes, dib drops alpha)
        raise ValueError(f"cannot write {suffix} images: name the output {', '.join(WRITE_FORMATS)}")
    img, rgb = _decompress(Path(src).read_bytes(), _settings(DecodeSettings, settings, {}))
    data = _encoded(img, fmt, rgb if img.mode == "RGB" else None)
    write_atomic(dst, data)
    return Written(len(data), img.width * img.height)


WRITE_FORMATS = {".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP", ".ppm": "PPM",
                 ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF"}  # decoded images
NO_ALPHA_FORMATS = ("JPEG", "BMP", "PPM", "GIF")  # Pillow writes or reads these without (full) alpha


def image_bytes(img: Image.Image, fmt: str = "png") -> bytes:
    """A decoded image as the bytes of an image file of format ``fmt`` (png, webp, tif, bmp, ppm, ...: the
    extensions of WRITE_FORMATS), its mode kept where the format can hold it (see ``decompress_file``)."""
    key = "." + fmt.lower().lstrip(".")
    if key not in WRITE_FORMATS:
        raise ValueError(f"cannot write {fmt} images: choose one of {', '.join(f[1:] for f in WRITE_FORMATS)}")
    return bytes(_encoded(img, WRITE_FORMATS[key]))


def _encoded(img: Image.Image, fmt: str, pixels: np.ndarray | None = None) -> bytes | memoryview:
    """The bytes of ``img`` saved as ``fmt``: the PNG writer's (format/png.py) for a decoded photo, else a view of
    Pillow's buffer (no copy of a big file either way). ``pixels``: ``img``'s own pixels as an array where the
    caller has them (np.asarray(img) would copy them). A mode the format cannot hold (CMYK as PNG, a palette as
    JPEG) is converted to RGB, or RGBA where there is alpha; alpha is never dropped: a format without it is an
    error."""
    import io

    fallback = "RGBA" if "A" in img.getbands() else "RGB"
    if fmt == "PNG" and png.supported(img.mode, img.info):  # a decoded photo: written on every core
        from neuralcodec.settings import process_threads

        return png.encode(np.asarray(img) if pixels is None else pixels, threads=process_threads())
    if fallback == "RGBA" and fmt in NO_ALPHA_FORMATS:
        raise ValueError(f"{fmt} cannot hold this image's alpha channel: decode to png, webp or tif")
    extra = imaging.metadata_options(img.info, fmt)  # ICC, EXIF, XMP where the format holds them
    if fmt == "WEBP":  # lossless: a decoded image is written as decoded, never coded a second time
        extra.update(lossless=True, exact=True)
    elif fmt == "PNG":  # zlib level 3: Kodak 766 KB in 0.06 s; Pillow's default 6: 777 KB in 0.13 s (filters dominate)
        extra.update(compress_level=png.LEVEL)
    meta = {k: extra.pop(k) for k in ("icc_profile", "exif", "xmp", "pnginfo") if k in extra}
    for attempt in range(2):
        buf = io.BytesIO()
        candidate = img if attempt == 0 else img.convert(fallback)
        try:
            try:
                candidate.save(buf, format=fmt, **extra, **meta)
            except Exception:  # noqa: BLE001 - metadata the format refuses (EXIF too long for JPEG, EXIF that
                if not meta:   # contradicts a TIFF's own tags): the image itself is written without it
                    raise
                buf = io.BytesIO()
                candidate.save(buf, format=fmt, **extra)
            return buf.getbuffer()
        except (OSError, ValueError) as e:
            if "mode" not in str(e).lower():  # Pillow's "cannot write mode X as Y" (ValueError for some formats)
                raise
    raise ValueError(f"{fmt} cannot hold a {img.mode} image (nor {fallback}): decode to png, webp or tif")
