"""`neuralcodec eval`: real files of ours and of classic codecs, BD-rates against them (the README's headline
numbers come from this path), on two tiny images."""

import json

from click.testing import CliRunner
from neuralcodec.cli.main import main

from conftest import photo_files


def test_eval_against_jpeg_writes_curves_and_bd_rates(tmp_path):
    data = photo_files(tmp_path / "imgs", 2, 64, 96)
    out = tmp_path / "report"
    r = CliRunner().invoke(main, ["eval", str(data), "--qualities", "10,50,90", "--against", "jpeg", "-o", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["images"] == 2 and set(rep["curves"]) == {"neuralcodec", "jpeg"}
    ours = rep["curves"]["neuralcodec"]
    assert ours["quality"] == [10.0, 50.0, 90.0] and ours["bpp"] == sorted(ours["bpp"])
    jpeg = rep["curves"]["jpeg"]
    assert len(jpeg["bpp"]) >= 4 and all(b > 0 for b in jpeg["bpp"])
    bd = rep["bd_rate"]["pillow-jpeg"]["psnr"]
    assert isinstance(bd, float) and -100 < bd < 100  # a real number, computed over the shared range
    assert (out / "rd.png").stat().st_size > 1000 and (out / "jpeg.json").exists()


def test_eval_of_an_empty_directory_is_an_error_not_a_crash(tmp_path):
    (tmp_path / "none").mkdir()
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "none"), "-o", str(tmp_path / "r")])
    assert r.exit_code == 1 and "no lossless images" in r.output
