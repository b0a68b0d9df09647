"""Rate control: --target-size/--target-bpp/--target-psnr find the quality on real encodes."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import neuralcodec
from neuralcodec.cli.main import main
from neuralcodec.ratecontrol import Reached, Target, TargetError, parse_size, search

from conftest import photo


def test_sizes_parse_as_people_write_them():
    assert [parse_size(s) for s in ("5000", "100k", "1.5M", "64KiB", "2MiB", "300B")] == \
        [5000, 100_000, 1_500_000, 65536, 2 * 1024**2, 300]
    for bad in ("", "k", "-3", "1e3", "12 parsecs", "0.1"):
        with pytest.raises(ValueError):
            parse_size(bad)
    with pytest.raises(ValueError):
        Target("size", -1)
    with pytest.raises(ValueError):
        Target("ssim", 0.9)


def test_the_search_meets_a_smooth_target_and_reports_an_unreachable_one():
    calls = []

    def measure(q):  # bytes growing exponentially with q, as real files do
        calls.append(q)
        return b"x", 1000 * np.exp(0.031 * q)

    r = search(measure, Target("size", 5000))
    assert r.met and 0.98 * 5000 <= r.value <= 5000 and r.encodes == len(calls) <= 6
    r = search(measure, Target("size", 500))  # below q 0's size
    assert not r.met and r.quality == 0
    r = search(measure, Target("bpp", 10**6))
    assert not r.met and r.quality == 100
    r = search(lambda q: (b"y", 33.0), Target("psnr", 40), variable_rate=False)
    assert not r.met and r.encodes == 1


def test_real_files_meet_size_bpp_and_psnr_targets(tmp_path):
    img = photo(96, 128, 4)
    sizes = [len(neuralcodec.compress(img, q)) for q in (0, 100)]
    goal = int(0.5 * (sizes[0] + sizes[1]))
    data = neuralcodec.compress(img, target=Target("size", goal))
    assert 0.98 * goal <= len(data) <= goal
    bpp = 8 * len(neuralcodec.compress(img, 70)) / img[..., 0].size
    r = neuralcodec.api.compress_to_target(img, neuralcodec.EncodeSettings(target=Target("bpp", bpp * 0.9)))
    assert r.met and abs(8 * len(r.data) / img[..., 0].size / (bpp * 0.9) - 1) <= 0.02
    r = neuralcodec.api.compress_to_target(img, neuralcodec.EncodeSettings(target=Target("psnr", 30.0)))
    out = np.asarray(neuralcodec.decompress(r.data)).astype(float)
    assert r.met and abs(10 * np.log10(255**2 / np.mean((out - img) ** 2)) - 30.0) <= 0.1
    with pytest.raises(TargetError) as e:
        neuralcodec.compress(img, target=Target("size", 20))
    assert isinstance(e.value.reached, Reached) and e.value.reached.quality == 0


def test_the_command_line_prints_what_was_reached_and_fails_out_of_reach(tmp_path):
    img = photo(64, 96, 6)
    Image.fromarray(img).save(tmp_path / "a.png")
    r = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "--target-size", "0.6k",
                                  "-o", str(tmp_path / "a.nic")])
    size = (tmp_path / "a.nic").stat().st_size
    assert r.exit_code == 0 and 588 <= size <= 600 and "quality" in r.stderr and "bytes" in r.stderr, r.output
    r = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "--target-size", "50",
                                  "-o", str(tmp_path / "b.nic")])
    assert r.exit_code == 1 and "out of reach" in r.stderr and (tmp_path / "b.nic").exists()
    for args in (["--target-size", "lots"], ["--target-bpp", "-1"], ["--target-size", "9k", "--target-psnr", "30"]):
        r = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), *args])
        assert r.exit_code == 2, args


def test_a_target_missed_by_a_hair_is_still_searched():
    """A first size over the target by a few bytes must not stall the slope step on the same quality."""
    r = search(lambda q: (b"z", 100_000.5 + 2000 * (q - 50)), Target("size", 100_000))
    assert r.met and r.quality < 50


def test_a_fixed_rate_model_names_its_one_rate_not_a_quality(tmp_path):
    Image.fromarray(photo(48, 64)).save(tmp_path / "a.png")
    r = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "--model", "lighthp", "--target-size", "100k"])
    assert r.exit_code == 1 and "at the one rate of lighthp" in r.output and "quality" not in r.output.split(
        "variable-rate")[0], r.output


def test_device_strings_are_checked():
    from neuralcodec.settings import EncodeSettings

    assert EncodeSettings(device="cuda:1").device == "cuda:1"
    for bad in ("cuda:abc", "cuda:", "gpu", "cuda:1x"):
        with pytest.raises(ValueError, match="cuda:N"):
            EncodeSettings(device=bad)
