"""The command line, through click's CliRunner."""

import json
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

import neuralcodec
from neuralcodec.cli.main import main

from conftest import photo


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_single_file_round_trip(tmp_path):
    src = tmp_path / "img.png"
    Image.fromarray(photo(48, 72)).save(src)
    r = run("compress", src, "-o", tmp_path / "img.nic", "-q", 70)
    assert r.exit_code == 0, r.output
    r = run("decompress", tmp_path / "img.nic", "-o", tmp_path / "back.png")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "back.png").size == (72, 48)
    r = run("decompress", tmp_path / "img.nic")  # default: img.png beside it, which exists
    assert r.exit_code == 1 and "exists (use -o to write elsewhere" in r.output
    assert run("decompress", tmp_path / "img.nic", "-f").exit_code == 0
    r = run("info", tmp_path / "img.nic", "--json")
    h = json.loads(r.output)
    assert r.exit_code == 0 and h["width"] == 72 and h["quality"] == 70


def test_directory_batch_with_broken_input(tmp_path, photo_dir):
    out, back = tmp_path / "out", tmp_path / "back"
    r = run("compress", photo_dir, "-o", out, "-r")
    assert r.exit_code == 1
    assert "broken.png" in r.output and "3 converted, 1 failed" in r.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["a.nic", "b.nic", "sub", "sub/c.nic"]
    assert not list(out.rglob("*.part")) and not (out / "broken.nic").exists()
    r = run("decompress", out, "-o", back, "-r")
    assert r.exit_code == 0, r.output
    for name, size in [("a.png", (56, 40)), ("b.png", (47, 33)), ("sub/c.png", (30, 30))]:
        assert Image.open(back / name).size == size
    # rerun: existing outputs are kept unless forced; --skip-existing resumes quietly
    r = run("compress", photo_dir, "-o", out, "-r", "--skip-existing")
    assert r.exit_code == 1 and "3 skipped" in r.output  # the broken file still fails
    before = (out / "a.nic").stat().st_mtime_ns
    assert run("compress", photo_dir, "-o", out, "-r").exit_code == 1
    assert (out / "a.nic").stat().st_mtime_ns == before


def test_jobs_auto_starts_a_worker_per_core_only_for_enough_pixels(tmp_path, photo_dir, monkeypatch):
    from neuralcodec.cli import batch
    from neuralcodec.settings import DecodeSettings, EncodeSettings

    jobs = batch.plan(photo_dir, tmp_path / "out", "compress", True).jobs  # 3 small images and a broken one
    cpu = EncodeSettings(backend="onnx")
    monkeypatch.setattr(batch, "usable_cores", lambda: 4)
    monkeypatch.setattr(batch, "_available_memory", lambda: None)  # unknown: the cores decide
    assert batch.auto_workers(jobs, "compress", cpu) == 1  # a few thousand pixels: no worker pays for its start
    pixels = [batch._pixels(j, "compress") for j in jobs]
    assert sorted(pixels) == [0, 30 * 30, 47 * 33, 56 * 40]  # the broken file counts for nothing
    monkeypatch.setattr(batch, "WORKER_PIXELS", 1000)
    assert batch.auto_workers(jobs, "compress", cpu) == 4  # sum(pixels) // 1000 = 4 = cores = files
    assert batch.auto_workers(jobs[:2], "compress", cpu) == 2  # never more workers than files
    monkeypatch.setattr(batch, "_available_memory", lambda: 3 * batch.WORKER_MEMORY - 1)
    assert batch.auto_workers(jobs, "compress", cpu) == 2  # each worker may need WORKER_MEMORY
    assert batch.auto_workers(jobs, "compress", EncodeSettings(backend="torch")) == 1
    assert batch.auto_workers(jobs, "compress", EncodeSettings(effort=2)) == 1  # torch: one device to share
    nic = tmp_path / "a.nic"
    nic.write_bytes(neuralcodec.compress(photo(40, 56), 30))
    assert batch._pixels(batch.Job(nic, tmp_path / "a.png"), "decompress") == 40 * 56  # from the header alone
    assert batch._pixels(batch.Job(photo_dir / "broken.png", nic), "decompress") == 0
    assert batch.auto_workers([batch.Job(nic, nic)] * 2, "decompress", DecodeSettings(backend="onnx")) == 2
    ico = tmp_path / "icon.png"  # an ICO decodes its embedded images while opening: never opened for a size
    Image.new("RGB", (64, 64)).save(ico, format="ICO")
    assert batch._pixels(batch.Job(ico, nic), "compress") == 0
    monkeypatch.setattr(batch, "_available_memory", lambda: None)
    calls = []
    monkeypatch.setattr(batch, "_pixels", lambda job, direction, limit: calls.append(job) or 10**6)
    monkeypatch.setattr(batch, "WORKER_PIXELS", 2 * 10**6)
    assert batch.auto_workers(jobs, "compress", cpu) == 2 and len(calls) == 4  # 4 Mpx: two workers
    calls.clear()
    monkeypatch.setattr(batch, "WORKER_PIXELS", 10**5)
    assert batch.auto_workers(jobs, "compress", cpu) == 4 and len(calls) == 1  # one header already fills the cores
    monkeypatch.setattr(batch, "usable_cores", lambda: 1)
    assert batch.auto_workers(jobs, "compress", cpu) == 1
    for bad in ("0", "65", "two", "\u00b2", "2.5"):
        r = CliRunner().invoke(main, ["compress", str(photo_dir), "-j", bad])
        assert r.exit_code == 2 and "auto or a whole number within 1..64" in r.output


def test_parallel_workers(tmp_path, photo_dir):
    (photo_dir / "broken.png").unlink()
    r = run("compress", photo_dir, "-o", tmp_path / "out", "-j", 2)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.nic", "b.nic"]


def test_a_dead_worker_costs_one_retry_and_a_file_that_kills_it_twice_fails_alone(tmp_path, monkeypatch):
    """A worker that dies breaks its pool: the pool restarts, the files in flight run again one by one, and only
    the one whose worker dies again is reported; every other file is converted."""
    from neuralcodec.cli import batch

    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        Image.fromarray(photo(24, 32, i)).save(src / f"p{i}.png")
    monkeypatch.setenv(batch.CRASH_ENV, "p2.png")  # inherited by the worker processes
    r = run("compress", src, "-o", tmp_path / "out", "-j", 2)
    assert r.exit_code == 1
    assert "p2.png: not converted: its worker process died twice" in r.output and "4 converted, 1 failed" in r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.nic", "p1.nic", "p3.nic", "p4.nic"]


def test_corrupt_nic_gives_one_line_error_and_no_output(tmp_path):
    src = tmp_path / "img.png"
    Image.fromarray(photo(32, 32)).save(src)
    assert run("compress", src).exit_code == 0
    data = bytearray((tmp_path / "img.nic").read_bytes())
    data[len(data) // 2] ^= 0x10
    (tmp_path / "bad.nic").write_bytes(bytes(data))
    r = run("decompress", tmp_path / "bad.nic")
    assert r.exit_code == 1
    assert r.output.count("\n") == 1 and "bad.nic" in r.output and "checksum" in r.output
    assert not (tmp_path / "bad.png").exists()
    assert run("info", tmp_path / "bad.nic").exit_code == 1


def test_usage_errors_exit_2(tmp_path):
    assert run("compress", tmp_path / "missing.png").exit_code == 2
    assert run("compress", tmp_path, "-q", 101).exit_code == 2
    assert run("compress", tmp_path, "-f", "--skip-existing").exit_code == 2
    src = tmp_path / "a.png"
    Image.fromarray(photo(20, 20)).save(src)
    for bad in (["--weights", "nosuch"], ["--model", "nosuch"]):
        r = run("compress", src, *bad)
        assert r.exit_code == 2 and "nosuch" in r.output and not (tmp_path / "a.nic").exists()
    import torch

    if not torch.cuda.is_available():
        r = run("compress", src, "--device", "cuda")
        assert r.exit_code == 2 and "no CUDA device" in r.output
    assert run("export", tmp_path, "-o", tmp_path / "w.safetensors").exit_code == 2  # not a run directory
    for bad, message in ((["--against", "jpeg,gif"], "choose from jpeg, webp, avif, jxl"),
                         (["--qualities", "low"], "not a comma-separated list"),
                         (["--qualities", "0,120"], "qualities run from 0 to 100"),
                         (["--weights", "nosuch"], "'nosuch' not found")):
        r = run("eval", tmp_path, *bad)  # refused before any weights load or image is coded
        assert r.exit_code == 2 and message in r.output, r.output
    (tmp_path / "bad.json").write_text('{"name": "no results"}')
    r = run("eval", tmp_path, "--anchors", tmp_path / "bad.json", "-o", tmp_path / "report")
    assert r.exit_code == 2 and "not an RD curve" in r.output and not (tmp_path / "report").exists(), r.output


def test_shipped_seed_models_by_name(tmp_path):
    Image.fromarray(photo(32, 48, 3)).save(tmp_path / "a.png")
    for model in ("lighthp", "hvae", "betavae", "vqvae"):
        r = run("compress", tmp_path / "a.png", "--model", model, "-o", tmp_path / f"{model}.nic", "--quiet")
        assert r.exit_code == 0, r.output
        assert neuralcodec.info((tmp_path / f"{model}.nic").read_bytes())["model"] == model
        assert run("decompress", tmp_path / f"{model}.nic", "-o", tmp_path / f"{model}.png").exit_code == 0
    r = run("decompress", tmp_path / "lighthp.nic", "--perceptual", "-o", tmp_path / "p.png")
    assert r.exit_code == 0 and Image.open(tmp_path / "p.png").size == (48, 32)


def test_help_teaches():
    r = run("--help")
    assert r.exit_code == 0 and "neuralcodec compress img.png" in r.output
    assert "quality" in run("compress", "--help").output


def test_interrupted_batch_leaves_only_complete_files_and_resumes(tmp_path, photo_dir, monkeypatch):
    (photo_dir / "broken.png").unlink()
    out = tmp_path / "out"
    import os

    real_fsync = os.fsync
    calls = {"n": 0, "part_seen": False}

    def interrupted_fsync(fd):  # Ctrl-C inside the real writer, with the second output's temp file on disk
        calls["n"] += 1
        if calls["n"] == 2:
            calls["part_seen"] = bool(list(out.rglob("*.part")))
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    r = run("compress", photo_dir, "-o", out, "-r")
    assert r.exit_code == 130 and "interrupted" in r.output
    done = sorted(p.name for p in out.rglob("*.nic"))
    assert calls["part_seen"] and len(done) == 1 and not list(out.rglob("*.part"))
    monkeypatch.setattr(os, "fsync", real_fsync)
    r = run("compress", photo_dir, "-o", out, "-r", "--skip-existing")
    assert r.exit_code == 0 and "2 converted" in r.output and "1 skipped" in r.output
    assert sorted(p.name for p in out.rglob("*.nic")) == ["a.nic", "b.nic", "c.nic"]


def test_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch):
    import os

    from neuralcodec.format.fileio import write_atomic

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "x.nic", b"data")
    assert list(tmp_path.iterdir()) == []


def test_info_text_names_model_weights_quality_and_geometry(tmp_path):
    Image.fromarray(photo(40, 56, 3)).save(tmp_path / "x.png")
    assert run("compress", tmp_path / "x.png", "-o", tmp_path / "x.nic", "-q", 50).exit_code == 0
    r = run("info", tmp_path / "x.nic")
    lines = r.output.splitlines()
    assert r.exit_code == 0 and len(lines) == 3
    assert "neuralcodec v6, model modhp" in lines[0] and "quality 50" in lines[0]
    assert "56x40 RGB" in lines[1] and "ramp-filtered; deblocked" in lines[1] and "bpp" in lines[2]


def test_verbose_prints_one_line_per_file_and_quiet_none(tmp_path, photo_dir):
    (photo_dir / "broken.png").unlink()
    r = run("compress", photo_dir, "-o", tmp_path / "v", "-r", "-v")
    per_file = [line for line in r.output.splitlines() if " -> " in line and "bpp" in line and "converted" not in line]
    assert r.exit_code == 0 and len(per_file) == 3
    r = run("compress", photo_dir, "-o", tmp_path / "q", "-r", "--quiet")
    assert r.exit_code == 0 and r.output.strip() == ""


def test_decompress_format_names_directory_outputs(tmp_path, photo_dir):
    (photo_dir / "broken.png").unlink()
    assert run("compress", photo_dir, "-o", tmp_path / "nic").exit_code == 0
    r = run("decompress", tmp_path / "nic", "-o", tmp_path / "back", "--format", "tif")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == ["a.tif", "b.tif"]
    assert Image.open(tmp_path / "back" / "a.tif").format == "TIFF"


def test_max_pixels_refuses_a_bigger_file_and_says_which_flag(tmp_path):
    Image.fromarray(photo(40, 56, 3)).save(tmp_path / "x.png")
    run("compress", tmp_path / "x.png", "-o", tmp_path / "x.nic")
    r = run("decompress", tmp_path / "x.nic", "--max-pixels", 100, "-o", tmp_path / "y.png")
    assert r.exit_code == 1 and "2240 pixels exceeds the limit of 100" in r.output and "--max-pixels" in r.output
    assert not (tmp_path / "y.png").exists()
    assert run("decompress", tmp_path / "x.nic", "--max-pixels", 2240, "-o", tmp_path / "y.png").exit_code == 0


def test_parallel_workers_report_failures_both_ways(tmp_path, photo_dir):
    r = run("compress", photo_dir, "-o", tmp_path / "nic", "-r", "-j", 2)
    assert r.exit_code == 1 and "broken.png" in r.output and "3 converted, 1 failed" in r.output
    (tmp_path / "nic" / "junk.nic").write_bytes(b"NIC\x00 not really")
    r = run("decompress", tmp_path / "nic", "-o", tmp_path / "back", "-r", "-j", 2)
    assert r.exit_code == 1 and "junk.nic" in r.output and "3 converted, 1 failed" in r.output
    assert sorted(p.relative_to(tmp_path / "back").as_posix() for p in (tmp_path / "back").rglob("*.png")) == [
        "a.png", "b.png", "sub/c.png"]


def test_empty_directory_name_clashes_and_output_over_input(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("compress", tmp_path / "empty", "-o", tmp_path / "out")
    assert r.exit_code == 1 and "no images found" in r.output
    d = tmp_path / "d"
    d.mkdir()
    Image.fromarray(photo(40, 56, 1)).save(d / "a.png")
    Image.fromarray(photo(40, 56, 2)).save(d / "a.jpg", quality=95)
    r = run("compress", d, "-o", tmp_path / "out")
    assert r.exit_code == 1 and "would also come from" in r.output and "1 converted, 1 failed" in r.output
    src = tmp_path / "x.png"
    Image.fromarray(photo(40, 56, 3)).save(src)
    before = src.read_bytes()
    r = run("compress", src, "-o", src)
    assert r.exit_code == 1 and "overwrite the input" in r.output and src.read_bytes() == before


def test_bd_rate_of_known_curves():
    from neuralcodec.evaluation.rd import bd_rate

    rate = [0.1, 0.25, 0.5, 1.0]
    psnr = [26.0, 29.0, 32.0, 35.0]
    assert bd_rate(rate, psnr, rate, psnr) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(rate, psnr, [0.9 * r for r in rate], psnr) == pytest.approx(-10.0, abs=1e-6)
    assert bd_rate(rate, psnr, [1.25 * r for r in rate], [p + 0.5 for p in psnr]) < 25.0  # better quality too


def test_pipes_carry_one_image_each_way(tmp_path):
    """`-` reads standard input, `-o -` writes standard output (only the payload), both commands."""
    import io

    import numpy as np

    from PIL import Image

    src = tmp_path / "a.png"
    Image.fromarray(photo(40, 56, 2)).save(src)
    by_file = neuralcodec.compress(str(src), 30)
    r = CliRunner().invoke(main, ["compress", "-", "-q", "30"], input=src.read_bytes())
    assert r.exit_code == 0 and r.stdout_bytes == by_file, r.stderr
    r = CliRunner().invoke(main, ["compress", str(src), "-q", "30", "-o", "-"])
    assert r.exit_code == 0 and r.stdout_bytes == by_file
    r = CliRunner().invoke(main, ["decompress", "-"], input=by_file)
    assert r.exit_code == 0 and r.stdout_bytes[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.stdout_bytes))),
                          np.asarray(neuralcodec.decompress(by_file)))
    r = CliRunner().invoke(main, ["decompress", "-", "--format", "ppm", "-o", "-"], input=by_file)
    assert r.exit_code == 0 and r.stdout_bytes[:2] == b"P6"
    r = CliRunner().invoke(main, ["decompress", "-", "-o", str(tmp_path / "b.tif")], input=by_file)
    assert r.exit_code == 0 and Image.open(tmp_path / "b.tif").format == "TIFF"
    r = CliRunner().invoke(main, ["decompress", "-"], input=b"not a nic file")
    assert r.exit_code == 1 and "<stdin>" in r.stderr and not r.stdout_bytes
    r = CliRunner().invoke(main, ["compress", "-", "-r"], input=b"")
    assert r.exit_code == 2


def test_messages_that_tell_the_truth(tmp_path, monkeypatch):
    """WebP output is lossless; -q on a fixed-rate model says it is ignored; an unknown --model lists the real
    ones; a .nic given to compress points at decompress; a read-only directory names the user's path; the API
    refuses a 5-channel array with its own error."""
    import os

    import numpy as np

    from neuralcodec.format.imaging import ImageError
    from neuralcodec.models import ARCHITECTURES, VARIABLE_RATE, architecture

    img = photo(40, 48, 5)
    Image.fromarray(img).save(tmp_path / "a.png")
    data = neuralcodec.compress(img, 50)
    (tmp_path / "a.nic").write_bytes(data)
    r = CliRunner().invoke(main, ["decompress", str(tmp_path / "a.nic"), "-o", str(tmp_path / "a.webp")])
    assert r.exit_code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.webp").convert("RGB")),
                          np.asarray(neuralcodec.decompress(data)))

    r = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "--model", "lighthp", "-q", "80", "-o",
                                  str(tmp_path / "l.nic")])
    assert r.exit_code == 0 and "-q is ignored" in r.stderr
    r = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "-q", "80", "-o", str(tmp_path / "f.nic")])
    assert r.exit_code == 0 and "ignored" not in r.stderr
    assert VARIABLE_RATE == {a for a in ARCHITECTURES if architecture(a).variable_rate}

    r = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "--model", "nosuch"])
    assert r.exit_code == 2 and "unknown model 'nosuch'" in r.output and "lighthp" in r.output
    assert "train --arch nosuch" not in r.output

    r = CliRunner().invoke(main, ["compress", str(tmp_path / "a.nic"), "-o", str(tmp_path / "x.nic")])
    assert r.exit_code == 1 and "use neuralcodec decompress" in r.stderr

    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        if not os.access(ro, os.W_OK):  # root writes anywhere: nothing to check
            r = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "-o", str(ro / "a.nic")])
            assert r.exit_code == 1 and str(ro / "a.nic") in r.stderr and ".part" not in r.stderr
    finally:
        os.chmod(ro, 0o755)
    import tempfile

    from neuralcodec.format.fileio import write_atomic

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".b.nic.xyz.part"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # what a read-only directory does, even to root
    with pytest.raises(PermissionError, match=r"cannot write .*b\.nic: Permission denied") as e:
        write_atomic(tmp_path / "b.nic", b"x")
    assert ".part" not in str(e.value)
    monkeypatch.undo()

    with pytest.raises(ImageError, match="HxWxC"):
        neuralcodec.compress(np.zeros((8, 8, 5), np.uint8))
    assert neuralcodec.compress(np.zeros((16, 16, 1), np.uint8))  # one channel: gray


def test_the_installed_entry_skips_teardown_only_after_a_conversion(tmp_path, monkeypatch):
    """cli.main.entry: after compress or decompress, the exit handler it registered first (so it runs last) ends
    the process with the command's status; after other commands, or where a handler came before it, or after an
    uncaught Ctrl-C, the normal exit. (End to end, in a fresh process: tests/test_onnx.py.)"""
    import types

    from neuralcodec.cli import main as cli_main

    handlers, exits, before = [], [], [0]
    monkeypatch.setattr(cli_main, "atexit", types.SimpleNamespace(register=lambda f, *a: handlers.append((f, a)),
                                                                  _ncallbacks=lambda: before[0]))
    monkeypatch.setattr(cli_main, "os", types.SimpleNamespace(_exit=exits.append))
    monkeypatch.setattr(cli_main, "_QUICK_EXIT", {"armed": False})

    def run(*args):
        handlers.clear()
        exits.clear()
        cli_main._QUICK_EXIT["armed"] = False
        monkeypatch.setattr(sys, "argv", ["neuralcodec", *map(str, args)])
        with pytest.raises(SystemExit) as e:
            cli_main.entry()
        for f, a in handlers:
            f(*a)
        return e.value.code

    junk = tmp_path / "junk.nic"
    junk.write_bytes(b"junk")
    assert run("decompress", junk, "-o", tmp_path / "j.png", "--quiet") == 1 and exits == [1]
    assert run("info", junk) == 1 and exits == []  # not a conversion: the normal exit
    before[0] = 1  # a handler registered before entry's would be skipped: none registered, the normal exit
    assert run("decompress", junk, "-o", tmp_path / "j.png", "--quiet") == 1 and not handlers and exits == []
    before[0] = 0
    monkeypatch.setattr(cli_main, "main", lambda: (cli_main._QUICK_EXIT.update(armed=True), _interrupt())[1])
    handlers.clear()
    with pytest.raises(KeyboardInterrupt):
        cli_main.entry()
    for f, a in handlers:
        f(*a)
    assert exits == []  # Python reports an uncaught Ctrl-C itself


def _interrupt():
    raise KeyboardInterrupt
