"""The command line, through click's CliRunner."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import neuralcodec
from neuralcodec.cli import main

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


def test_parallel_workers(tmp_path, photo_dir):
    (photo_dir / "broken.png").unlink()
    r = run("compress", photo_dir, "-o", tmp_path / "out", "-j", 2)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.nic", "b.nic"]


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

    from neuralcodec.fileio import write_atomic

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "x.nic", b"data")
    assert list(tmp_path.iterdir()) == []
