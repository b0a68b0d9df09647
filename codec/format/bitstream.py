"""The `.nic` container (docs/bitstream.md): header and CRC-checked chunks. Pure Python: no torch here."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from neuralcodec.errors import PIXEL_LIMIT, NeuralcodecError

MAGIC = b"\x89NIC\r\n\x1a\n"
VERSION = 7  # written only where a file needs it: 7 with a halo under OLD_MIN_HALO; 6 with the ramp flag; 5 with
# the deblocking flag; 4 with a WebP-lossless alpha plane or ancillary chunks; else 3
READABLE = (2, 3, 4, 5, 6, 7)  # version 2: the same header without the tile geometry; 4: version 3's header, ancillary
# chunks and the ALPW alpha chunk
# tile geometry a decoder accepts, in latents of y (docs/bitstream.md, *Tiling*): tiles of MIN_TILE..MAX_TILE,
# halos at most half a tile (so at most 4x the work of untiled), windows (tile + 2 halo) at most MAX_WINDOW
# (so the synthesis holds at most ~0.8 GB of activations)
MIN_TILE, MAX_TILE, MAX_WINDOW = 8, 64, 80
OLD_MIN_HALO = 4  # the least halo a decoder before version 7 (neuralcodec 0.7) accepts for any model

DEFAULT_MAX_PIXELS = 268_435_456
MAX_SIDE = 65_535 * 16  # pixels: the format's limit (u16 latent shapes at 16 px per latent); a model with finer
# latents has a lower one, checked by the encoder and the decoder where the model's shapes are known
CHANNELS = {"RGB": 3, "L": 1, "RGBA": 4, "LA": 2, "P": 1, "PA": 2, "1": 1, "CMYK": 4, "YCbCr": 3}  # per mode
MODES = tuple(CHANNELS)  # the header's mode codes, in this order
ALPHA_MODES = ("RGBA", "LA", "PA")  # the modes whose files carry an alpha chunk
ALPHA_TAG = b"ALPH"  # alpha plane, zlib (versions 2..7)
ALPHA_WEBP_TAG = b"ALPW"  # alpha plane, WebP lossless (versions 4 to 7)
ALPHA_TAGS = (ALPHA_TAG, ALPHA_WEBP_TAG)
_TAG_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_ANCILLARY_BYTES = _TAG_BYTES | frozenset(b"abcdefghijklmnopqrstuvwxyz")
FLAG_ALPHA = 1
FLAG_DEBLOCK = 2  # version 5: decoders filter the image across the latent grid (pipeline.deblock)
FLAG_RAMP = 4  # version 6: before that, decoders spread small steps across the grid into ramps (pipeline.deblock)
_MAX_CHUNKS = 16
_FIXED = {2: struct.Struct("<32sHIIBBBB3H3HB"), 3: struct.Struct("<32sHIIBBBB3H3HHHB")}  # digest .. chunk count
_FIXED[4] = _FIXED[5] = _FIXED[6] = _FIXED[7] = _FIXED[3]


def is_ancillary(tag: bytes) -> bool:
    """An ancillary chunk (version 4): its tag starts with a lowercase letter; a decoder that does not know it
    skips it (metadata: ``iCCP``, ``eXIF``, ``xMPT``)."""
    return len(tag) == 4 and 0x61 <= tag[0] <= 0x7A


def tile_geometry_error(tile: int, halo: int) -> str | None:
    """Why a (tile, halo) geometry is refused, or None."""
    if not MIN_TILE <= tile <= MAX_TILE:
        return f"tile of {tile} latents is outside {MIN_TILE}..{MAX_TILE}"
    if 2 * halo > tile or tile + 2 * halo > MAX_WINDOW:
        return f"halo of {halo} latents is over half the tile ({tile}) or makes windows over {MAX_WINDOW}"
    return None


class FormatError(NeuralcodecError, ValueError):
    """The data is not a valid `.nic` file; the message says why in one line."""


@dataclass
class Header:
    model_id: str
    weights_digest: bytes
    rate: int  # u16 rate selector (neuralcodec.rate: quality -> rate -> t -> gain)
    width: int
    height: int
    channels: int
    bit_depth: int
    mode: str
    flags: int
    y_shape: tuple[int, int, int]
    z_shape: tuple[int, int, int]
    tile: int = 0  # tile side and halo of the transforms, in latents of y (0: not recorded, version 2)
    halo: int = 0
    version: int = field(default=VERSION, compare=False)  # of the file it was read from; written: 3, or 4 to 7
    # where the file needs it (bitstream.pack)

    @property
    def has_alpha(self) -> bool:
        return bool(self.flags & FLAG_ALPHA)

    @property
    def deblock(self) -> bool:
        return bool(self.flags & FLAG_DEBLOCK)

    @property
    def ramp(self) -> bool:
        return bool(self.flags & FLAG_RAMP)


@dataclass
class Container:
    header: Header
    chunks: dict[bytes, bytes] = field(default_factory=dict)


def pack(c: Container) -> bytes:
    h = c.header
    mid = h.model_id.encode("ascii")
    if not 1 <= len(mid) <= 32:
        raise ValueError("model id must be 1..32 ASCII characters")
    if len(h.weights_digest) != 32:
        raise ValueError("weights digest must be 32 bytes")
    error = tile_geometry_error(h.tile, h.halo)
    if error:
        raise ValueError(error)
    version = 7 if h.halo < OLD_MIN_HALO else 6 if h.flags & FLAG_RAMP else 5 if h.flags & FLAG_DEBLOCK \
        else 4 if any(is_ancillary(t) or t == ALPHA_WEBP_TAG for t in c.chunks) else 3
    head = MAGIC + bytes([version, len(mid)]) + mid + _FIXED[version].pack(
        h.weights_digest, h.rate, h.width, h.height, h.channels, h.bit_depth, MODES.index(h.mode), h.flags,
        *h.y_shape, *h.z_shape, h.tile, h.halo, len(c.chunks))
    out = [head, struct.pack("<I", zlib.crc32(head))]
    for tag, payload in c.chunks.items():
        body = tag + struct.pack("<I", len(payload)) + payload
        out += [body, struct.pack("<I", zlib.crc32(body))]
    return b"".join(out)


def parse_header(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Header, int, int]:
    """Parse and check the header; returns (header, chunk count, offset of the first chunk)."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise FormatError("not a .nic file (bad magic)" if data else "empty file")
    if len(data) < 10:
        raise FormatError("truncated header")
    version, n = data[8], data[9]
    if version == 1:
        raise FormatError("format version 1 (neuralcodec 0.1, floating-point entropy parameters) is no longer "
                          "decodable; decode it with neuralcodec 0.1")
    if version not in READABLE:
        raise FormatError(f"unsupported format version {version} (this decoder reads versions "
                          f"{', '.join(map(str, READABLE))})")
    if not 1 <= n <= 32:
        raise FormatError(f"bad model id length {n}")
    fixed = _FIXED[version]
    end = 10 + n + fixed.size
    if len(data) < end + 4:
        raise FormatError("truncated header")
    (crc,) = struct.unpack_from("<I", data, end)
    if zlib.crc32(data[:end]) != crc:
        raise FormatError("header checksum mismatch (file is corrupt)")
    if not all(0x21 <= b <= 0x7E for b in data[10:10 + n]):  # it is printed in messages: no control characters
        raise FormatError("model id is not printable ASCII")
    model_id = data[10:10 + n].decode("ascii")
    digest, rate, w, h, ch, depth, mode, flags, yc, yh, yw, zc, zh, zw, *tiling, count = fixed.unpack_from(data, 10 + n)
    tile, halo = tiling or (0, 0)
    error = tile_geometry_error(tile, halo) if version >= 3 else None
    if error:
        raise FormatError(f"bad tile geometry: {error}")
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise FormatError(f"bad image size {w}x{h} (each side 1..{MAX_SIDE})")
    if w * h > max_pixels:
        raise FormatError(f"image of {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}", PIXEL_LIMIT)
    if ch not in (1, 2, 3, 4) or depth != 8 or mode >= len(MODES):
        raise FormatError(f"unsupported pixel format (channels {ch}, depth {depth}, mode {mode})")
    if flags & ~(FLAG_ALPHA | (FLAG_DEBLOCK if version >= 5 else 0) | (FLAG_RAMP if version >= 6 else 0)):
        raise FormatError(f"unknown flags {flags:#x}")
    if ch != CHANNELS[MODES[mode]] or bool(flags & FLAG_ALPHA) != (MODES[mode] in ALPHA_MODES):
        raise FormatError(f"mode {MODES[mode]}, {ch} channels and the alpha flag ({flags & FLAG_ALPHA}) disagree")
    if not 1 <= count <= _MAX_CHUNKS:
        raise FormatError(f"bad chunk count {count}")
    header = Header(model_id, digest, rate, w, h, ch, depth, MODES[mode], flags, (yc, yh, yw), (zc, zh, zw),
                    tile, halo, version)
    return header, count, end + 4


def unpack(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Container:
    """Parse a whole file, checking every CRC and length; raises FormatError on any defect."""
    header, count, pos = parse_header(data, max_pixels)
    chunks: dict[bytes, bytes] = {}
    for _ in range(count):
        if len(data) < pos + 8:
            raise FormatError("truncated file (chunk header missing)")
        tag = data[pos:pos + 4]
        (length,) = struct.unpack_from("<I", data, pos + 4)
        ancillary = header.version >= 4 and is_ancillary(tag)
        if not set(tag) <= (_ANCILLARY_BYTES if ancillary else _TAG_BYTES) or tag in chunks \
                or (tag == ALPHA_WEBP_TAG and header.version < 4):
            raise FormatError(f"unexpected chunk {tag!r}")
        if len(data) < pos + 8 + length + 4:
            raise FormatError(f"truncated file (chunk {tag.decode()} runs past the end)")
        body = data[pos:pos + 8 + length]
        (crc,) = struct.unpack_from("<I", data, pos + 8 + length)
        if zlib.crc32(body) != crc:
            raise FormatError(f"chunk {tag.decode()} checksum mismatch (file is corrupt)")
        chunks[tag] = body[8:]
        pos += 12 + length
    if pos != len(data):
        raise FormatError(f"{len(data) - pos} unexpected bytes after the last chunk")
    tags = list(chunks)
    critical = [t for t in tags if not is_ancillary(t)]
    alphas = [t for t in critical if t in ALPHA_TAGS]
    if (not critical or (critical[-1] in ALPHA_TAGS) != header.has_alpha or len(alphas) > header.has_alpha
            or len(critical) < 1 + header.has_alpha or tags[:len(critical)] != critical):  # ancillary chunks last
        raise FormatError(f"chunks {[t.decode() for t in tags]} do not match the header")
    return Container(header, chunks)
