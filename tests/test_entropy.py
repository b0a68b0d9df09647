import numpy as np
import pytest

from neuralcodec.coding import entropy
from neuralcodec.zoo.weights_io import SCALE_TABLE


@pytest.fixture(scope="module")
def tables():
    return entropy.gaussian_tables(SCALE_TABLE.astype(np.float64))


def test_gaussian_round_trip_and_rate(tables):
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 64, (8, 16, 16))
    v = np.round(rng.normal(0, SCALE_TABLE[idx])).astype(np.int32)
    data = entropy.encode(v, idx, tables)
    assert np.array_equal(entropy.decode(data, idx, tables), v)
    # close to the entropy of the quantized Gaussians: no gross waste
    assert len(data) * 8 / v.size < np.mean(np.log2(SCALE_TABLE[idx] * np.sqrt(2 * np.pi * np.e))) + 0.6


def test_extreme_latents_round_trip_via_escape(tables):
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 64, 200)
    v = rng.integers(-5, 5, 200).astype(np.int64)
    v[:6] = [2**31 - 1, -(2**31 - 1), 10**6, -(10**6), 5000, -5000]
    data = entropy.encode(v, idx, tables)
    assert np.array_equal(entropy.decode(data, idx, tables), v)


def test_all_escapes_and_empty(tables):
    idx = np.zeros(50, np.int64)
    v = np.full(50, 99, np.int64)  # table 0 (scale 0.11) covers only a few values
    assert np.array_equal(entropy.decode(entropy.encode(v, idx, tables), idx, tables), v)
    empty = np.zeros(0, np.int64)
    assert entropy.decode(entropy.encode(empty, empty, tables), empty, tables).size == 0


def test_bad_indexes_and_lengths(tables):
    with pytest.raises(ValueError):
        entropy.encode(np.zeros(3), np.array([0, 1, 64]), tables)
    with pytest.raises(entropy.EntropyError):
        entropy.decode(b"abc", np.zeros(3, np.int64), tables)
    with pytest.raises(entropy.EntropyError):
        entropy.decode(b"abcd", np.array([-1]), tables)


def test_garbage_stream_never_hangs_or_crashes(tables):
    rng = np.random.default_rng(2)
    idx = rng.integers(0, 64, 1000)
    for n in (0, 4, 64, 4096):
        try:
            out = entropy.decode(rng.bytes(n), idx, tables)
            assert out.shape == idx.shape
        except entropy.EntropyError:
            pass
