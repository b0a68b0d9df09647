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
    rows = json.loads((out / "neuralcodec.json").read_text())["per_image"]
    assert len(rows) == 6 and all(r["bytes"] > 0 and len(r["decoded_sha256"]) == 64 for r in rows)
    assert all(abs(r["bpp"] - 8 * r["bytes"] / (64 * 96)) < 1e-12 for r in rows)


def test_eval_of_an_empty_directory_is_an_error_not_a_crash(tmp_path):
    (tmp_path / "none").mkdir()
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "none"), "-o", str(tmp_path / "r")])
    assert r.exit_code == 1 and "no lossless images" in r.output


def _result(points, per_image):
    q, bpp, psnr = (list(v) for v in zip(*points))
    return {"results": {"quality": q, "bpp": bpp, "psnr-rgb": psnr, "ms-ssim": [0.9, 0.95, 0.98]},
            "per_image": per_image}


def _compare(tmp_path, old, new):
    import subprocess
    import sys
    from pathlib import Path
    for name, res in (("old.json", old), ("new.json", new)):
        (tmp_path / name).write_text(json.dumps(res))
    script = Path(__file__).resolve().parent.parent / "bench" / "compare_weights.py"
    return subprocess.run([sys.executable, str(script), str(tmp_path / "old.json"), str(tmp_path / "new.json")],
                          capture_output=True, text=True)


def test_compare_weights_counts_the_same_files_as_unchanged_not_as_a_loss(tmp_path):
    """The shipping rule: better at every rate, where a point with the same files and pixels for every image (a new
    top analysis leaves the rates below its split so) is unchanged; a point without that proof must gain."""
    same = [{"image": f"i{k}.png", "quality": q, "bytes": 100 + k, "decoded_sha256": f"{q}{k}"}
            for q in (0.0, 50.0) for k in range(2)]
    top_old = [{"image": f"i{k}.png", "quality": 100.0, "bytes": 900, "decoded_sha256": f"o{k}"} for k in range(2)]
    top_new = [{"image": f"i{k}.png", "quality": 100.0, "bytes": 900, "decoded_sha256": f"n{k}"} for k in range(2)]
    old = _result([(0.0, 0.1, 28.0), (50.0, 0.5, 32.0), (100.0, 1.5, 35.9)], same + top_old)
    # float noise at q 0 (-0.0004 dB) with the very same files: unchanged; q 100 gains
    new = _result([(0.0, 0.1, 27.9996), (50.0, 0.5, 32.0), (100.0, 1.5, 36.0)], same + top_new)
    r = _compare(tmp_path, old, new)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "unchanged at q 0, 50" in r.stdout and "+0.100 dB" in r.stdout
    # the same numbers with one image's pixels different at q 0: that point must gain, and it lost
    other = [dict(x, decoded_sha256="x") if x["quality"] == 0.0 and x["image"] == "i0.png" else x for x in same]
    r = _compare(tmp_path, old, dict(new, per_image=other + top_new))
    assert r.returncode == 1 and "NOT better" in r.stdout and "(unchanged at q 50)" in r.stdout
    # results without the per-image proof (before 2026-12-07) compare every point as before
    r = _compare(tmp_path, dict(old, per_image=[]), new)
    assert r.returncode == 1 and "unchanged" not in r.stdout
