import zlib

import pytest

from neuralcodec.format import bitstream as bs


def make(alpha=False):
    h = bs.Header("modhp", bytes(range(32)), 12345, 768, 512, 4 if alpha else 3, 8, "RGBA" if alpha else "RGB",
                  bs.FLAG_ALPHA if alpha else 0, (192, 32, 48), (128, 8, 12), 48, 4)
    chunks = {b"ZHYP": b"z" * 10, b"YLAT": b"y" * 100}
    if alpha:
        chunks[b"ALPH"] = zlib.compress(b"\xff" * 100)
    return bs.Container(h, chunks)


@pytest.mark.parametrize("alpha", [False, True])
def test_every_header_field_round_trips(alpha):
    c = make(alpha)
    d = bs.unpack(bs.pack(c))
    assert d.header == c.header
    assert d.chunks == c.chunks


def test_magic_and_version():
    data = bs.pack(make())
    assert data.startswith(b"\x89NIC\r\n\x1a\n") and data[8] == 3
    with pytest.raises(bs.FormatError, match="bad magic"):
        bs.unpack(b"GIF89a" + data[6:])
    bad = bytearray(data)
    bad[8] = 8
    with pytest.raises(bs.FormatError, match="version 8"):
        bs.unpack(bytes(bad))
    bad[8] = 1  # the float-hyperprior format of neuralcodec 0.1: refused by name
    with pytest.raises(bs.FormatError, match="version 1 .*neuralcodec 0.1"):
        bs.unpack(bytes(bad))
    with pytest.raises(bs.FormatError, match="empty"):
        bs.unpack(b"")


def test_every_truncation_is_refused():
    data = bs.pack(make(True))
    for n in range(len(data)):
        with pytest.raises(bs.FormatError):
            bs.unpack(data[:n])


def test_every_single_bit_flip_is_refused():
    data = bs.pack(make(True))
    for i in range(len(data)):
        for bit in (0, 3, 7):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(bs.FormatError):
                bs.unpack(bytes(bad))


def test_trailing_bytes_refused():
    with pytest.raises(bs.FormatError, match="unexpected bytes"):
        bs.unpack(bs.pack(make()) + b"\0")


def test_absurd_dimensions_refused_before_decoding():
    c = make()
    c.header.width = c.header.height = 60000
    data = bs.pack(c)
    with pytest.raises(bs.FormatError, match="exceeds the limit"):
        bs.unpack(data)
    assert bs.unpack(data, max_pixels=60000**2).header.width == 60000
    c.header.width, c.header.height = bs.MAX_SIDE + 1, 1  # latent shapes are u16: no real file is this wide
    with pytest.raises(bs.FormatError, match="each side 1..1048560"):
        bs.unpack(bs.pack(c), max_pixels=2**40)


def relabelled(data: bytes, version: int) -> bytes:
    """``data`` (a file of make()'s header) claiming another format version, its header CRC mended."""
    bad = bytearray(data)
    bad[8] = version
    end = len(bs.MAGIC) + 2 + len(b"modhp") + bs._FIXED[3].size
    bad[end:end + 4] = zlib.crc32(bytes(bad[:end])).to_bytes(4, "little")
    return bytes(bad)


def test_the_deblocking_flag_makes_version_5_and_older_versions_refuse_it():
    c = make()
    c.header.flags = bs.FLAG_DEBLOCK
    data = bs.pack(c)
    d = bs.unpack(data)
    assert data[8] == 5 and d.header.deblock and d.header.version == 5 and d.chunks == c.chunks
    assert not bs.unpack(bs.pack(make())).header.deblock
    for version in (3, 4):  # the flag means nothing before version 5: a file claiming otherwise is refused
        with pytest.raises(bs.FormatError, match="unknown flags 0x2"):
            bs.unpack(relabelled(data, version))
    c.header.flags = 8  # a bit no version knows
    with pytest.raises(bs.FormatError, match="unknown flags 0x8"):
        bs.unpack(bs.pack(c))


def test_a_halo_under_4_makes_version_7():
    """The flagship's tiles need a halo of 2 (its receptive field): a 0.7 decoder asks for 4 of every model, so
    such files say version 7 and older decoders refuse them by version, not by geometry."""
    c = make()
    c.header.flags = bs.FLAG_DEBLOCK | bs.FLAG_RAMP
    c.header.halo = 2
    data = bs.pack(c)
    d = bs.unpack(data)
    assert data[8] == 7 and d.header.version == 7 and d.header.halo == 2 and d.header.ramp and d.chunks == c.chunks
    c.header.halo = 4  # a halo an older decoder accepts keeps the version the flags ask for
    assert bs.pack(c)[8] == 6
    assert bs.pack(make())[8] == 3
    with pytest.raises(bs.FormatError, match="unsupported format version 8"):
        bs.unpack(relabelled(data, 8))


def test_the_ramp_flag_makes_version_6_and_older_versions_refuse_it():
    c = make()
    c.header.flags = bs.FLAG_DEBLOCK | bs.FLAG_RAMP
    data = bs.pack(c)
    d = bs.unpack(data)
    assert data[8] == 6 and d.header.ramp and d.header.deblock and d.header.version == 6 and d.chunks == c.chunks
    assert not bs.unpack(bs.pack(make())).header.ramp
    for version in (3, 4, 5):  # the flag means nothing before version 6
        with pytest.raises(bs.FormatError, match="unknown flags"):
            bs.unpack(relabelled(data, version))


@pytest.mark.parametrize("mode, channels, flags", [("RGBA", 4, 0), ("RGB", 3, bs.FLAG_ALPHA), ("RGB", 4, 0),
                                                    ("P", 3, 0)])
def test_mode_channels_and_alpha_flag_must_agree(mode, channels, flags):
    c = make()
    c.header.mode, c.header.channels, c.header.flags = mode, channels, flags
    if flags:
        c.chunks[b"ALPH"] = zlib.compress(b"\xff" * 100)
    with pytest.raises(bs.FormatError, match="disagree"):
        bs.unpack(bs.pack(c))


@pytest.mark.parametrize("model_id", ["mod\x1b[2Jhp", "mod hp", "modh\xe9"])
def test_model_id_must_be_printable_ascii(model_id):
    """The id is echoed in error messages: no terminal escapes, spaces or non-ASCII bytes."""
    c = make()
    c.header.model_id = "modhp"
    data = bytearray(bs.pack(c))
    raw = model_id.encode("latin-1")
    data[10:15] = raw[:5]
    n = 10 + 5 + bs._FIXED[3].size
    data[n:n + 4] = zlib.crc32(bytes(data[:n])).to_bytes(4, "little")
    with pytest.raises(bs.FormatError, match="printable ASCII"):
        bs.unpack(bytes(data))


def test_chunk_length_past_end_refused():
    data = bytearray(bs.pack(make()))
    _, _, pos = bs.parse_header(bytes(data))
    data[pos + 4:pos + 8] = (2**32 - 1).to_bytes(4, "little")
    with pytest.raises(bs.FormatError, match="past the end"):
        bs.unpack(bytes(data))
