"""`--engine ray`: a directory converted on a local Ray cluster (a head with two worker processes on the loopback
address, started inside the test), with one worker killed mid-run and one file that kills its worker every time;
outputs byte-identical to the local runner's."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from neuralcodec.cli import batch, ray_engine
from neuralcodec.cli.main import main

from conftest import photo

ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'neuralcodec[ray]')")


def _tree(root):
    (root / "sub").mkdir(parents=True)
    for i in range(8):
        Image.fromarray(photo(256, 384, i)).save(root / ("sub" if i % 3 == 0 else ".") / f"p{i}.png")
    Image.fromarray(photo(32, 32, 9)).save(root / "poison.png")  # kills its worker (NEURALCODEC_TEST_CRASH)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return root


def _task_workers():
    """PIDs of Ray worker processes converting a file now (Ray titles a busy worker after its task)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "ray::neuralcodec-convert" in line]


@pytest.mark.timeout(600)
def test_a_cluster_run_survives_a_killed_worker_and_matches_the_local_run(tmp_path, monkeypatch):
    src = _tree(tmp_path / "src")
    local = tmp_path / "local"
    r = CliRunner().invoke(main, ["compress", str(src), "-r", "-o", str(local), "-j", "2", "--quiet"])
    assert r.exit_code == 1  # the broken file (the local runner has no crash injection: poison.png converts)

    from ray.cluster_utils import Cluster

    monkeypatch.setenv(batch.CRASH_ENV, "poison.png")  # read by the cluster's workers, not by this process
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        out = tmp_path / "out"
        loopback = "127.0.0.1:" + cluster.address.rsplit(":", 1)[1]  # Ray reads it as this node's own address
        cmd = [sys.executable, "-m", "neuralcodec", "compress", str(src), "-r", "-o", str(out), "--engine", "ray",
               "--address", loopback]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        killed, deadline = None, time.time() + 400
        while killed is None and proc.poll() is None and time.time() < deadline:
            busy = _task_workers()
            if busy and out.exists() and list(out.rglob("*.nic")):  # mid-run: some files done, one in flight
                killed = busy[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.01)
        output, _ = proc.communicate(timeout=400)
        # decompress on the cluster: the same images as the local runner's
        back = subprocess.run([sys.executable, "-m", "neuralcodec", "decompress", str(out), "-r", "-o",
                               str(tmp_path / "back"), "--engine", "ray", "--address", loopback, "--quiet"],
                              capture_output=True, text=True, timeout=400)
        # Ctrl-C (SIGINT to the process group, as a terminal sends it): exit 130 within seconds, no partial file
        stop = tmp_path / "stopped"
        proc2 = subprocess.Popen([sys.executable, "-m", "neuralcodec", "compress", str(src), "-r", "-o", str(stop),
                                  "--engine", "ray", "--address", loopback, "--quiet"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        while proc2.poll() is None and not (stop.exists() and list(stop.rglob("*.nic"))):
            time.sleep(0.01)
        t0 = time.time()
        os.killpg(proc2.pid, signal.SIGINT)
        output2, _ = proc2.communicate(timeout=120)
        seconds = time.time() - t0
    finally:
        cluster.shutdown()
    assert proc2.returncode == 130 and "interrupted" in output2 and "Traceback" not in output2, output2
    assert seconds < 20, seconds
    assert not [p for p in stop.rglob("*") if p.is_file() and p.suffix != ".nic"]
    assert back.returncode == 0, back.stdout + back.stderr
    assert len(list((tmp_path / "back").rglob("*.png"))) == 8
    assert killed is not None, f"no worker was caught mid-run\n{output}"
    assert proc.returncode == 1, output  # two failures: the broken file, and the one that crashed twice
    assert "Traceback" not in output, output
    assert "broken.png" in output and "poison.png: not converted: its worker process died twice" in output, output
    assert "8 converted, 2 failed, 0 skipped" in output, output
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert made == sorted(p.relative_to(local).as_posix() for p in local.rglob("*.nic") if p.name != "poison.nic")
    for rel in made:  # byte-identical to the local runner's files, the killed worker's file included
        assert (out / rel).read_bytes() == (local / rel).read_bytes(), rel


def test_without_ray_the_flag_says_how_to_install_it(tmp_path, monkeypatch):
    Image.fromarray(photo(16, 16)).save(tmp_path / "a.png")
    monkeypatch.setattr(ray_engine, "available", lambda: False)
    r = CliRunner().invoke(main, ["compress", str(tmp_path), "--engine", "ray"])
    assert r.exit_code == 2 and "pip install 'neuralcodec[ray]'" in r.output
    r = CliRunner().invoke(main, ["compress", str(tmp_path), "--address", "127.0.0.1:6379"])
    assert r.exit_code == 2 and "--engine ray" in r.output
    assert not (tmp_path / "a.nic").exists()


def test_an_address_where_no_cluster_answers_fails_in_seconds(tmp_path):
    Image.fromarray(photo(16, 16)).save(tmp_path / "a.png")
    t0 = time.monotonic()
    r = CliRunner().invoke(main, ["compress", str(tmp_path), "--engine", "ray", "--address", "127.0.0.1:9"])
    assert r.exit_code == 1 and "no Ray cluster answers at 127.0.0.1:9" in r.output, r.output
    assert time.monotonic() - t0 < 20 and not (tmp_path / "a.nic").exists()


def test_tasks_take_a_gpu_where_the_cluster_offers_one():
    assert ray_engine.placement({"CPU": 16.0, "GPU": 2.0}, "auto") == (2, 1)
    assert ray_engine.placement({"CPU": 16.0, "GPU": 2.0}, "cuda") == (2, 1)
    assert ray_engine.placement({"CPU": 16.0, "GPU": 2.0}, "cpu") == (16, 0)
    assert ray_engine.placement({"CPU": 16.0}, "auto") == (16, 0)
    assert ray_engine.placement({}, "auto") == (1, 0)
    for device, resources in (("cuda:1", {"GPU": 2.0}), ("cuda", {"CPU": 16.0})):  # refused before any file starts
        with pytest.raises(ray_engine.EngineError, match="--device cuda"):
            ray_engine.placement(resources, device)


def test_failures_say_what_ray_said():
    from neuralcodec.cli.batch import Job

    job = Job(Path("a.png"), Path("a.nic"))
    assert "died twice (out of memory or killed?) (WorkerCrashedError)" in ray_engine._failure(job, ray.exceptions.WorkerCrashedError()).error
    e = RuntimeError("Traceback ...\nModuleNotFoundError: No module named 'neuralcodec'")
    assert ray_engine._failure(job, e).error == ("not converted: RuntimeError: ModuleNotFoundError: No module named "
                                                 "'neuralcodec'")
    assert not ray_engine._failure(job, ray.exceptions.TaskCancelledError()).ok


def test_relative_paths_reach_the_workers_absolute(tmp_path, monkeypatch):
    from neuralcodec.cli.batch import Job

    monkeypatch.chdir(tmp_path)
    job = ray_engine._absolute(Job(Path("in/a.png"), Path("out/a.nic")))
    assert job.src == tmp_path / "in/a.png" and job.dst == tmp_path / "out/a.nic"


@pytest.mark.timeout(300)
def test_a_cluster_offering_a_gpu_converts_on_it(tmp_path, monkeypatch):
    """A declared GPU (no CUDA here: the codec falls back to the CPU): the tasks that ask for it run, and the files
    are the CPU's."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.fromarray(photo(32, 48, i)).save(src / f"{i}.png")
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1, "include_dashboard": False})
    try:
        r = CliRunner().invoke(main, ["compress", str(src), "-o", str(tmp_path / "gpu"), "--engine", "ray",
                                      "--address", cluster.address])
    finally:
        cluster.shutdown()
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["compress", str(src), "-o", str(tmp_path / "local"), "-j", "2"])
    for i in range(3):
        assert (tmp_path / "gpu" / f"{i}.nic").read_bytes() == (tmp_path / "local" / f"{i}.nic").read_bytes()
