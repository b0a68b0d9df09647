"""Metadata (ICC, EXIF, XMP) carried in ancillary chunks, WebP-lossless alpha, and ancillary chunks a decoder
does not know (format version 4)."""

import io

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

import neuralcodec
from neuralcodec.api import DecodeError, read_container
from neuralcodec.cli.main import main
from neuralcodec.format import bitstream, imaging

from conftest import photo

XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'


def tagged_image():
    img = Image.fromarray(photo(48, 64, 3))
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "neuralcodec test camera"  # Make
    return img, icc, exif.tobytes()


def test_icc_exif_and_xmp_travel_to_every_format_that_holds_them(tmp_path):
    img, icc, exif = tagged_image()
    src = tmp_path / "a.png"
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    img.save(src, icc_profile=icc, exif=exif, pnginfo=info)
    data = neuralcodec.compress(str(src), 50)
    c = read_container(data)
    assert c.header.version == 6 and c.chunks[b"iCCP"] == icc and c.chunks[b"eXIF"] == exif
    assert c.chunks[b"xMPT"] == XMP
    (tmp_path / "a.nic").write_bytes(data)
    for ext in ("png", "jpg", "webp"):
        r = CliRunner().invoke(main, ["decompress", str(tmp_path / "a.nic"), "-o", str(tmp_path / f"b.{ext}")])
        assert r.exit_code == 0, r.output
        out = Image.open(tmp_path / f"b.{ext}")
        assert out.info.get("icc_profile") == icc, ext
        assert out.getexif().get(0x010F) == "neuralcodec test camera", ext
        assert imaging.read_metadata(out.info).get("xmp", b"").strip(b"\0 ") == XMP, ext

    stripped = neuralcodec.compress(str(src), 50, strip=True)
    c = read_container(stripped)
    assert c.header.version == 6 and not [t for t in c.chunks if bitstream.is_ancillary(t)]  # 6: the filters' flags
    assert len(stripped) < len(data)
    r = CliRunner().invoke(main, ["compress", str(src), "--strip", "-o", str(tmp_path / "s.nic")])
    assert r.exit_code == 0 and (tmp_path / "s.nic").read_bytes() == stripped


def test_alpha_is_coded_webp_lossless_where_that_is_smaller():
    h, w = 256, 320
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = np.clip((100 - np.hypot(yy - 128, xx - 150)) * 3, 0, 255).astype(np.uint8)  # soft-edged disc
    rgba = np.dstack([photo(h, w, 1), alpha])
    data = neuralcodec.compress(rgba, 40)
    c = read_container(data)
    import zlib

    assert c.header.version == 6 and b"ALPW" in c.chunks and b"ALPH" not in c.chunks
    assert len(c.chunks[b"ALPW"]) < 0.75 * len(zlib.compress(alpha.tobytes(), 9))
    out = neuralcodec.decompress(data)
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out.getchannel("A")), alpha)
    flat = np.dstack([photo(40, 40, 2), np.full((40, 40), 255, np.uint8)])  # constant: zlib is smaller
    assert b"ALPH" in read_container(neuralcodec.compress(flat, 40)).chunks


def test_unknown_ancillary_chunks_are_skipped_and_unknown_critical_ones_refused():
    data = neuralcodec.compress(photo(32, 40, 4), 50)
    c = read_container(data)
    plain = np.asarray(neuralcodec.decompress(data))
    c.chunks[b"zFUT"] = b"a chunk from a later version"
    more = bitstream.pack(c)
    assert more[8] == 6 and np.array_equal(np.asarray(neuralcodec.decompress(more)), plain)
    assert neuralcodec.info(more)["chunks"]["zFUT"] == 28
    c.chunks.pop(b"zFUT")
    c.chunks[b"QQQQ"] = b"critical and unknown"
    with pytest.raises(DecodeError, match="do not match"):
        neuralcodec.decompress(bitstream.pack(c))


def test_a_hostile_webp_alpha_chunk_is_refused_cleanly():
    rgba = np.dstack([photo(40, 48, 5), (np.arange(40 * 48) % 251).astype(np.uint8).reshape(40, 48)])
    c = read_container(neuralcodec.compress(rgba, 40))
    assert b"ALPW" in c.chunks
    other = io.BytesIO()
    Image.new("RGB", (47, 40)).save(other, format="WEBP", lossless=True)
    for bad in (b"RIFF\x00\x00\x00\x00WEBPgarbage", c.chunks[b"ALPW"][:30], other.getvalue()):
        c.chunks[b"ALPW"] = bad
        with pytest.raises(DecodeError, match="alpha"):
            neuralcodec.decompress(bitstream.pack(c))


def test_metadata_a_format_refuses_is_dropped_not_the_image(tmp_path):
    """EXIF that contradicts a TIFF's own tags, or XMP too long for JPEG: the image is written without it."""
    from neuralcodec.api import image_bytes

    img = Image.fromarray(photo(24, 32, 1))
    img.info["exif"] = b"Exif\x00\x00" + b"not a tiff header at all" * 3
    img.info["xmp"] = b"<x>" + b"a" * 70000 + b"</x>"
    for fmt in ("tif", "jpg", "png", "webp"):
        out = Image.open(io.BytesIO(image_bytes(img, fmt)))
        assert out.size == (32, 24), fmt
