"""A directory of 200+ small files with broken ones among them, converted for real, interrupted and resumed."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
from click.testing import CliRunner
from PIL import Image

import neuralcodec
from neuralcodec.cli.main import main

from conftest import photo

N_GOOD = 200
BROKEN = ["d0/truncated.png", "d1/text.jpg", "d2/empty.png", "d3/garbage.webp", "zero.bmp"]


def make_tree(root):
    rng = np.random.default_rng(0)
    for i in range(N_GOOD):
        h, w = (int(v) for v in rng.integers(8, 24, 2))
        d = root / f"d{i % 4}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(h, w, i)).save(d / f"img{i:03d}.png")
    good = (root / "d0" / "img000.png").read_bytes()
    (root / BROKEN[0]).write_bytes(good[: len(good) // 2])
    (root / BROKEN[1]).write_text("not a jpeg")
    (root / BROKEN[2]).write_bytes(b"")
    (root / BROKEN[3]).write_bytes(os.urandom(300))
    (root / BROKEN[4]).write_bytes(b"BM" + b"\0" * 10)


def complete_outputs(out):
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nic"))


def test_two_hundred_files_interrupted_then_resumed(tmp_path):
    src, out, back = tmp_path / "src", tmp_path / "out", tmp_path / "back"
    make_tree(src)
    cmd = [sys.executable, "-c", "from neuralcodec.cli.main import main; main()", "compress", str(src), "-r", "-o", str(out),
           "-q", "40", "--quiet"]
    # a shell's background jobs ignore SIGINT, and children inherit that: restore the default, as a terminal has
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while (len(complete_outputs(out)) if out.exists() else 0) < 20:  # let it get well into the batch
        assert proc.poll() is None and time.time() < deadline, "the batch ended before it could be interrupted"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    first = complete_outputs(out)
    assert 20 <= len(first) < N_GOOD
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix != ".nic"]  # no temp or partial files
    for rel in first:  # everything written is whole
        neuralcodec.decompress((out / rel).read_bytes())

    r = CliRunner().invoke(main, ["compress", str(src), "-r", "-o", str(out), "-q", "40", "--skip-existing"],
                           catch_exceptions=False)
    assert r.exit_code == 1, r.output
    for name in BROKEN:
        assert name.split("/")[-1] in r.output
    assert f"{N_GOOD - len(first)} converted, {len(BROKEN)} failed" in r.output and f"{len(first)} skipped" in r.output
    assert len(complete_outputs(out)) == N_GOOD

    r = CliRunner().invoke(main, ["decompress", str(out), "-r", "-o", str(back)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    for i in range(N_GOOD):
        rel = f"d{i % 4}/img{i:03d}.png"
        a, b = np.asarray(Image.open(src / rel)), np.asarray(Image.open(back / rel))
        assert a.shape == b.shape
        assert np.mean(np.abs(a.astype(int) - b.astype(int))) < 40


def test_outputs_never_escape_the_output_directory(tmp_path):
    src, out, elsewhere = tmp_path / "src", tmp_path / "out", tmp_path / "elsewhere"
    (src / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    out.mkdir()
    Image.fromarray(photo(16, 16, 1)).save(src / "a.png")
    Image.fromarray(photo(16, 16, 2)).save(src / "sub" / "b.png")
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)  # a planted link inside the output tree
    r = CliRunner().invoke(main, ["compress", str(src), "-r", "-o", str(out)], catch_exceptions=False)
    assert r.exit_code == 1 and "outside" in r.output
    assert (out / "a.nic").exists() and list(elsewhere.iterdir()) == []


def _interrupted_batch(tmp_path, sigints: int):
    """A -j 2 batch of photos big enough to be in flight, Ctrl-C'd as a terminal does (SIGINT to the whole
    process group) ``sigints`` times; returns (exit status, seconds from the first SIGINT to the exit, output,
    complete outputs, inputs)."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    n = 12
    for i in range(n):
        Image.fromarray(photo(384, 512, i)).save(src / f"p{i:02d}.png")
    cmd = [sys.executable, "-m", "neuralcodec", "compress", str(src), "-o", str(out), "-j", "2", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while (len(complete_outputs(out)) if out.exists() else 0) < 1:
        assert proc.poll() is None and time.time() < deadline, "the batch ended before it could be interrupted"
        time.sleep(0.02)
    t0 = time.time()
    for i in range(sigints):
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.3)
    output, _ = proc.communicate(timeout=120)
    return proc.returncode, time.time() - t0, output, complete_outputs(out), n


def test_one_ctrl_c_stops_a_parallel_batch_within_seconds(tmp_path):
    """The first Ctrl-C starts nothing new; files in flight finish (or are dropped) and the run exits 130 in a few
    seconds, with every output whole, no temporary file left and no traceback."""
    status, seconds, output, done, n = _interrupted_batch(tmp_path, 1)
    assert status == 130 and "interrupted" in output and "Traceback" not in output, output
    assert seconds < 8 and 1 <= len(done) < n
    out = tmp_path / "out"
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix != ".nic"]
    for rel in done:
        neuralcodec.decompress((out / rel).read_bytes())


def test_a_second_ctrl_c_ends_the_workers_at_once(tmp_path):
    status, seconds, output, done, n = _interrupted_batch(tmp_path, 2)
    assert status == 130 and "Traceback" not in output, output
    assert seconds < 5 and len(done) < n
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file() and p.suffix != ".nic"]
