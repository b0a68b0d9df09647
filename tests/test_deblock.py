"""The deblocking filter across the latent grid (pipeline/deblock.py, docs/bitstream.md 'Deblocking filter')."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import neuralcodec
from neuralcodec.format import bitstream
from neuralcodec.pipeline import deblock as deblocking
from neuralcodec.pipeline.deblock import deblock

from conftest import photo, psnr


def ramp(h=96, w=128):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([60 + 0.5 * xx, 80 + 0.3 * yy, 150 - 0.2 * (xx + yy)], -1)


def grid_ratio(img):
    a = img.astype(np.float64)
    dx = np.abs(np.diff(a, axis=1)).mean(axis=(0, 2))
    across = (np.arange(dx.size) % 16) == 15
    return dx[across].mean() / dx[~across].mean()


def test_block_offsets_on_smooth_content_are_smoothed_and_the_result_is_closer_to_the_truth():
    rng = np.random.default_rng(0)
    truth = ramp()
    offsets = rng.integers(-2, 3, (96 // 16, 128 // 16, 3)).repeat(16, 0).repeat(16, 1)  # a 16-px grid
    blocky = np.clip(np.rint(truth + offsets), 0, 255).astype(np.uint8)
    out = deblock(blocky.copy())
    assert grid_ratio(blocky) > 5 and grid_ratio(out) < 0.25 * grid_ratio(blocky)
    assert psnr(out, np.rint(truth)) > psnr(blocky, np.rint(truth))


def test_edges_texture_and_plain_ramps_are_left_alone():
    edge = np.zeros((64, 64, 3), np.uint8)
    edge[:, 32:] = 60  # a real edge on a boundary: a step over the threshold
    assert np.array_equal(deblock(edge.copy()), edge)
    texture = photo(64, 96, 3)
    changed = deblock(texture.copy()) != texture
    assert changed.mean() < 0.02  # only where the photo happens to be flat across a boundary
    smooth = np.rint(ramp()).astype(np.uint8)  # no grid: taps summing to one keep a linear ramp (to rounding)
    assert np.abs(deblock(smooth.copy()).astype(int) - smooth).max() <= 1


def test_the_taps_are_the_documented_ones():
    """docs/bitstream.md gives p0' of each filter; one line across the boundary at column 16 of a 1-row image."""
    line = np.array([50, 50, 51, 51, 50, 51, 50, 53, 53, 52, 53, 53, 54, 53], np.int64)  # p6..p0, q0..q6: flat
    img = np.zeros((1, 32, 3), np.uint8)
    img[0, 9:23] = line[:, None]
    p6, p5, p4, p3, p2, p1, p0, q0, q1, q2, q3, q4, q5, q6 = line
    out = deblock(img.copy(), grid=16)[0, 9:23, 0]
    assert out[6] == (p6 + p5 + p4 + p3 + p2 + 2 * p1 + 2 * p0 + 2 * q0 + q1 + q2 + q3 + q4 + q5 + 8) >> 4
    assert out[0] == p6 and out[13] == q6  # the wide filter rewrites p5..q5
    line[[0, 13]] = [40, 65]  # no longer flat over seven pixels, still smooth over three: the strong filter
    img[0, 9:23] = line[:, None]
    p6, p5, p4, p3, p2, p1, p0, q0, q1, q2, q3, q4, q5, q6 = line
    out = deblock(img.copy(), grid=16)[0, 9:23, 0]
    assert out[6] == (p2 + 2 * p1 + 2 * p0 + 2 * q0 + q1 + 4) >> 3
    assert (out[:3] == line[:3]).all() and (out[11:] == line[11:]).all()  # the strong filter rewrites p2..q2


def test_small_grids_and_bad_inputs():
    img = photo(40, 40, 1)
    assert np.array_equal(deblock(img.copy(), grid=8), img)  # under the wide filter's reach: never filtered
    with pytest.raises(ValueError, match="uint8"):
        deblock(img.astype(np.float32))


def test_files_carry_the_flag_and_decoders_follow_it(tmp_path):
    yy, xx = np.mgrid[0:64, 0:96]
    img = np.clip(np.stack([90 + 0.4 * xx, 120 + 0.2 * yy, 200 - 0.3 * xx], -1), 0, 255).astype(np.uint8)
    data = neuralcodec.compress(img, 10)
    plain = neuralcodec.compress(img, 10, deblock=False)
    c, p = bitstream.unpack(data), bitstream.unpack(plain)
    assert c.header.deblock and c.header.ramp and c.header.version == 6  # below quality 65: both filters
    assert not p.header.deblock and not p.header.ramp and p.header.version == 3
    assert c.chunks == p.chunks and len(data) == len(plain)  # header bits: the same latents, the same size
    filtered = np.asarray(neuralcodec.decompress(data))
    unfiltered = np.asarray(neuralcodec.decompress(data, deblock=False))
    assert np.array_equal(unfiltered, np.asarray(neuralcodec.decompress(plain)))
    expected = deblock(deblocking.ramp(unfiltered.copy()), 16, *deblocking.thresholds(c.header.rate))
    assert np.array_equal(filtered, expected) and (filtered != unfiltered).any()  # the ramp filter, then deblocking
    high = bitstream.unpack(neuralcodec.compress(img, 70))  # from quality 65 on: the deblocking filter alone
    assert high.header.deblock and not high.header.ramp and high.header.version == 5
    rows, cols = np.nonzero((np.asarray(neuralcodec.decompress(bitstream.pack(high)))
                             != np.asarray(neuralcodec.decompress(bitstream.pack(high), deblock=False))).any(axis=2))
    near = lambda v: np.abs(v - 16 * np.round(v / 16)) <= 6  # noqa: E731
    assert rows.size and (near(rows) | near(cols)).all()  # only near the grid

    from neuralcodec.cli.main import main

    Image.fromarray(img).save(tmp_path / "a.png")
    r = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "-q", "10", "--no-deblock", "-o",
                                  str(tmp_path / "a.nic")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.nic").read_bytes() == plain
    (tmp_path / "b.nic").write_bytes(data)
    r = CliRunner().invoke(main, ["decompress", str(tmp_path / "b.nic"), "--no-deblock", "-o", str(tmp_path / "b.png")])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), unfiltered)


def test_the_filter_is_milder_at_high_rates():
    from neuralcodec.pipeline.deblock import thresholds

    assert thresholds(0) == (8, 4, 8) and thresholds(65535) == (8, 2, 3)
    steps = [thresholds(r) for r in range(0, 65536, 997)]
    assert all(a >= b for x, y in zip(steps, steps[1:]) for a, b in zip(x, y))  # never stronger as the rate rises


def test_the_wide_filter_needs_the_narrow_test_too_and_big_shapes_stay_bounded():
    line = np.array([50, 50, 50, 50, 56, 50, 50, 52, 52, 52, 52, 52, 52, 52])  # a 6-level bump two pixels out
    img = np.zeros((1, 32, 3), np.uint8)
    img[0, 9:23] = line[:, None]
    assert np.array_equal(deblock(img.copy()), img)  # not smooth over three pixels: neither filter
    wide = np.broadcast_to((100 + 4 * ((np.arange(200_000) // 16) % 2)).astype(np.uint8)[None, :, None], (2, 200_000, 3))
    wide = wide.copy()  # a band is a pixel budget, not a row count: a 2 x 200,000 image in small passes
    out = deblock(wide.copy())
    assert out.shape == wide.shape and (out != wide).any()


def test_info_shows_the_flag():
    data = neuralcodec.compress(photo(32, 40, 1), 30)
    assert neuralcodec.info(data)["deblock"] and not neuralcodec.info(neuralcodec.compress(photo(32, 40, 1), 30,
                                                                                          deblock=False))["deblock"]


def test_the_ramp_filter_turns_a_staircase_back_into_a_gradient():
    """A synthesis at low rates draws patches of a gradient nearly flat: a staircase with 16-px treads. The
    ramp filter spreads each step over the two half-patches; the deblocking filter alone cannot (its reach is
    6 pixels, so the middle of each patch stays flat)."""
    yy, xx = np.mgrid[0:96, 0:128]
    truth = np.stack([60 + 0.3 * xx, 80 + 0.2 * yy, 150 - 0.15 * (xx + yy)], -1)  # steps of 2.4 to 4.8 levels
    blocks = truth.reshape(6, 16, 8, 16, 3).mean(axis=(1, 3), keepdims=True)  # each patch at its mean
    stairs = np.clip(np.rint(np.broadcast_to(blocks, (6, 16, 8, 16, 3)).reshape(96, 128, 3)), 0, 255).astype(np.uint8)
    ramped = deblocking.ramp(stairs.copy())

    def across(img):  # mean |jump| across the vertical boundaries
        return np.abs(np.diff(img.astype(np.float64), axis=1))[:, 15::16].mean()

    assert across(ramped) < 0.3 * across(stairs)  # to about one level: the rest is rounding
    assert psnr(ramped, np.rint(truth)) > psnr(stairs, np.rint(truth)) + 6
    assert psnr(ramped, np.rint(truth)) > psnr(deblock(stairs.copy()), np.rint(truth)) + 1


def test_the_ramp_filter_leaves_edges_texture_and_true_gradients_alone():
    edge = np.full((64, 64, 3), 100, np.uint8)
    edge[:, 32:] = 100 + deblocking.RAMP_STEP  # a step at the threshold: an edge, not an artefact
    assert np.array_equal(deblocking.ramp(edge.copy()), edge)
    texture = photo(64, 96, 3)
    assert (deblocking.ramp(texture.copy()) != texture).mean() < 0.05
    smooth = np.rint(ramp()).astype(np.uint8)  # a gradient with no grid: each side's line meets the other's
    assert np.abs(deblocking.ramp(smooth.copy()).astype(int) - smooth).max() <= 1
    bump = np.full((1, 32, 3), 80, np.uint8)
    bump[0, 16:] = 82  # a small step at the boundary (column 16) ...
    bump[0, 11] = 84  # ... but a 4-level bump on its left side: not a straight ramp
    assert np.array_equal(deblocking.ramp(bump.copy()), bump)


def test_the_ramp_taps_are_the_documented_ones():
    """docs/bitstream.md: D = sum_i (77 - 16 i)(q_i - p_i); p_i += (D (15 - 2i) + 2688) div 5376, q_i -= it."""
    rng = np.random.default_rng(4)
    line = np.concatenate([50 + rng.integers(0, 2, 8), 54 + rng.integers(0, 2, 8)]).astype(np.int64)  # p7..p0, q0..q7
    img = np.zeros((1, 32, 3), np.uint8)
    img[0, 8:24] = line[:, None]
    p, q = line[7::-1], line[8:]
    d = int(sum((77 - 16 * i) * (q[i] - p[i]) for i in range(8)))
    corr = [(d * (15 - 2 * i) + 2688) // 5376 for i in range(8)]
    out = deblocking.ramp(img.copy())[0, 8:24, 0].astype(np.int64)
    assert list(out[7::-1]) == [p[i] + corr[i] for i in range(8)] and list(out[8:]) == [q[i] - corr[i] for i in range(8)]
    assert corr[0] > 0


def test_encoders_ask_for_the_ramp_filter_below_quality_65_on_a_16px_grid():
    from neuralcodec.rate import rate_of_quality

    assert deblocking.ramp_wanted(16, rate_of_quality(0), 24, 8) and deblocking.ramp_wanted(16, rate_of_quality(64), 8, 24)
    assert not deblocking.ramp_wanted(16, rate_of_quality(65), 64, 64) and not deblocking.ramp_wanted(8, 0, 64, 64)
    assert not deblocking.ramp_wanted(16, 0, 23, 23)  # no boundary with 8 pixels on either side: version 5 stays
    assert bitstream.unpack(neuralcodec.compress(photo(20, 23, 1), 10)).header.version == 5
    img = photo(40, 40, 1)
    assert np.array_equal(deblocking.ramp(img.copy(), grid=8), img)
    with pytest.raises(ValueError, match="uint8"):
        deblocking.ramp(img.astype(np.float32))
    wide = np.broadcast_to((100 + 3 * ((np.arange(100_000) // 16) % 2)).astype(np.uint8)[None, :, None], (2, 100_000, 3))
    out = deblocking.ramp(wide.copy())  # banded like the deblocking filter: big shapes stay bounded
    assert out.shape == wide.shape and (out != wide).any()


def test_threads_write_the_same_pixels(monkeypatch):
    """The bands of a pass touch disjoint pixels: on any number of threads, in bands of any size, both filters
    write what one thread writes."""
    rng = np.random.default_rng(5)
    smooth = (ramp(97, 131) + rng.integers(0, 5, (97, 131, 3))).astype(np.uint8)
    smooth[:, ::16] += 3  # steps on the grid for the filters to take
    images = [smooth, rng.integers(0, 256, (40, 75, 3), dtype=np.uint8), photo(64, 96, 3)]
    for band_pixels in (deblocking.BAND_PIXELS, 700):
        monkeypatch.setattr(deblocking, "BAND_PIXELS", band_pixels)
        for img in images:
            want = deblock(deblocking.ramp(img.copy()))
            assert not np.array_equal(want, img) or img is not smooth
            for threads in (2, 3, 8):
                got = deblock(deblocking.ramp(img.copy(), threads=threads), threads=threads)
                assert np.array_equal(got, want), (img.shape, band_pixels, threads)
