"""Short property-based fuzzing of the parser and the whole decoder (the long run lives in bench/fuzz.py)."""

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import neuralcodec
from neuralcodec.format import bitstream
from neuralcodec.api import DecodeError

from conftest import photo


@pytest.fixture(scope="module")
def sample():
    return neuralcodec.compress(photo(40, 72, 4), 60)


def mutate(data: bytes, edits, cut) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        if b:
            b[pos % len(b)] = val
    return bytes(b[: cut % (len(b) + 1)] if cut is not None else b)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_parser_never_crashes(sample, edits, cut):
    data = mutate(sample, edits, cut)
    try:
        bitstream.unpack(data)
    except bitstream.FormatError as e:
        assert str(e) and "\n" not in str(e)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3),
       fix_crc=st.booleans())
def test_decoder_never_crashes(sample, edits, fix_crc):
    """Mutations with the CRCs recomputed reach the entropy decoder and the model: still only DecodeError."""
    data = mutate(sample, edits, None)
    if fix_crc:
        try:
            c = bitstream.unpack(sample)
            for tag in c.chunks:
                c.chunks[tag] = mutate(c.chunks[tag], edits, None)
            data = bitstream.pack(c)
        except ValueError:
            return
    try:
        img = neuralcodec.decompress(data)
        assert img.size == (72, 40)
    except DecodeError as e:
        assert str(e) and "\n" not in str(e)
