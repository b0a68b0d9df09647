"""Running a batch plan on a Ray cluster (``--engine ray``): the same jobs, results and guarantees as the local
runner (neuralcodec.cli.batch.run), with the work spread over every node's cores or GPUs.

Why Ray tasks and not Ray Data or an actor pool: a conversion is one file in, one file out, a second or so each,
with the model cached per worker process (neuralcodec.api loads it once per process and Ray reuses its worker
processes), so tasks already give "load once per worker". Tasks also give per-file fault handling for free: a
task whose worker dies is retried once by Ray (``max_retries=1``) on another worker, and a file that kills its
worker twice comes back as ``WorkerCrashedError``, reported as that file's failure while the run goes on. Ray
Data would add pyarrow/pandas and its own batching and retry rules to a job that has no tabular data to move.

Inputs and outputs are paths: every node must see the same file system at the same paths (a shared or
network file system, or object storage mounted as one); see docs/scaling.md. Outputs are written by the
workers with the same atomic write as a local run, so a killed worker never leaves half a file and
``--skip-existing`` resumes a cluster run.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from neuralcodec.cli.batch import DIED_TWICE, Job, Result, drive, run_in_worker, sweep_parts
from neuralcodec.errors import NeuralcodecError

INSTALL = "pip install 'neuralcodec[ray]'"


class EngineError(NeuralcodecError, RuntimeError):
    """The cluster engine cannot run: Ray is not installed, or the cluster cannot be reached."""


def available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _convert(job: Job, direction: str, settings, threads: int) -> Result:
    """One file on a Ray worker: the local runner's conversion, with the worker's share of its node's cores."""
    os.environ["NEURALCODEC_THREADS"] = str(threads)  # read when this process loads its codec (once)
    return run_in_worker(job, direction, settings)


def connect(address: str | None):
    """Ray, initialized: connected to the cluster at ``address`` (``auto``: the one this machine belongs to), or
    else to ``RAY_ADDRESS``'s, or else to a cluster already running on this machine (``ray start``), or else to
    a Ray instance started for this run. Returns (the ray module, whether this call initialized it).

    The workers get the driver's ``NEURALCODEC_*`` environment (e.g. ``NEURALCODEC_CACHE_DIR``)."""
    try:
        import ray
    except ImportError:
        raise EngineError(f"--engine ray needs Ray: {INSTALL}") from None
    if ray.is_initialized():  # the caller's own session (the API used from a Ray driver): used as it is
        return ray, False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # an offline tool: no usage reports unless asked for
    given = address if address is not None else os.environ.get("RAY_ADDRESS") or None
    if given is not None and given.startswith("ray://"):
        raise EngineError(f"{given}: Ray Client addresses are not supported; give the head's HOST:PORT (its GCS "
                          "port, 6379 by default) and run the command on a machine that sees the files")
    if given not in (None, "auto", "local"):
        _check_reachable(given)
    env = {k: v for k, v in os.environ.items() if k.startswith("NEURALCODEC_") and k != "NEURALCODEC_THREADS"}
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False, include_dashboard=False,
                 runtime_env={"env_vars": env} if env else None)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as e:
        where = f"at {given}" if given else "(none running here, and a local one could not start)"
        raise EngineError(f"cannot reach a Ray cluster {where}: {str(e).splitlines()[0][:200]}") from None
    return ray, True


def _check_reachable(address: str, seconds: float = 5.0) -> None:
    """A wrong or dead ``address`` fails in seconds (Ray itself retries for minutes)."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(f"Ray address {address!r}: give HOST:PORT of the cluster's head (or auto)")
    try:  # Ray reads a loopback address as this node's own address: look where it will
        from ray._private.services import resolve_ip_for_localhost

        host = resolve_ip_for_localhost(host)
    except Exception:  # noqa: BLE001 - a private helper of Ray's: without it, try the address as given
        pass
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=seconds).close()
    except OSError as e:
        raise EngineError(f"no Ray cluster answers at {address}: {e}") from None


def placement(resources: dict, device: str) -> tuple[int, int]:
    """(files the cluster converts at once, GPUs each task asks for) from its resources (``ray.cluster_resources``):
    a GPU per task where the cluster has GPUs and ``device`` allows one (auto, cuda), else a CPU per task."""
    if str(device).startswith("cuda:"):
        raise EngineError("--engine ray gives each task one GPU of its own: use --device cuda (or auto), not "
                          f"{device}")
    gpus = int(resources.get("GPU", 0)) if device in ("auto", "cuda") else 0
    if device == "cuda" and not gpus:
        raise EngineError("--device cuda: the Ray cluster has no GPU (use --device auto or cpu)")
    if gpus:
        return gpus, 1
    return max(1, int(resources.get("CPU", 1))), 0


CRASHED = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "LocalRayletDiedError", "ActorDiedError")


def _failure(job: Job, e: Exception) -> Result:
    """The one-line report of a task Ray could not finish."""
    name = type(e).__name__
    if name in CRASHED:  # its worker died on the retry too (killed, out of memory), or its node did
        return Result(job, False, error=f"{DIED_TWICE} ({name})")
    if name == "TaskCancelledError":
        return Result(job, False, error="not converted: its task was cancelled (outside this run)")
    text = str(e).strip().splitlines()
    cause = text[-1] if text else ""  # a task's own error ends with its last line, e.g. an ImportError on a node
    return Result(job, False, error=f"not converted: {name}: {cause[:200]}")


def _absolute(job: Job) -> Job:
    """The paths a worker elsewhere can use: a relative path means the driver's directory, not the worker's."""
    return Job(Path(os.path.abspath(job.src)), Path(os.path.abspath(job.dst)))


def run(jobs: list[Job], direction: str, settings, address: str | None = None, in_flight_max: int | None = None,
        on_result=None) -> list[Result]:
    """Run ``jobs`` as Ray tasks, at most ``in_flight_max`` at once (default: twice the cluster's CPUs, or GPUs
    when it has some and ``settings.device`` allows a GPU); ``on_result`` is called as each finishes.

    Each task takes one CPU (its conversion runs one thread) or one GPU. A task whose worker dies is run once
    more; a second death reports the file as failed. Ctrl-C (KeyboardInterrupt, re-raised once handled): nothing
    new starts, files in flight get GRACE_SECONDS to finish, then their tasks are cancelled and their temporary
    files removed; a second Ctrl-C cancels them at once. Raises EngineError when the cluster cannot be used."""
    if getattr(settings, "weights", None) and os.path.exists(settings.weights):  # a path, not a shipped name
        settings = dataclasses.replace(settings, weights=os.path.abspath(settings.weights))
    ray, started = connect(address)
    results: list[Result] = []
    submitted: list[Job] = []

    def done(r):
        results.append(r)
        if on_result:
            on_result(r)

    in_flight: dict = {}
    try:
        slots, gpus_per_task = placement(ray.cluster_resources(), getattr(settings, "device", "auto"))
        task = ray.remote(_convert).options(max_retries=1, retry_exceptions=False, num_cpus=1,
                                            num_gpus=gpus_per_task, name="neuralcodec-convert")
        queue = iter(jobs)

        def submit():
            job = next(queue, None)
            if job is not None:
                job = _absolute(job)
                submitted.append(job)
                in_flight[task.remote(job, direction, settings, 1)] = job

        def collect(refs):
            for ref in refs:
                job = in_flight.pop(ref)
                try:
                    r = ray.get(ref)
                except ray.exceptions.RayError as e:  # its temporary file, if any: swept at the end
                    r = _failure(job, e)
                done(r)

        try:  # a short queue per slot by default: no idle gap between files
            drive(in_flight, submit, lambda timeout: ray.wait(list(in_flight), num_returns=1, timeout=timeout)[0],
                  collect, in_flight_max or slots * 2)
        except ray.exceptions.RayError as e:  # the cluster itself failed (lost connection, head gone)
            raise EngineError(f"the Ray cluster failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    finally:
        try:
            if in_flight:
                for ref in in_flight:
                    ray.cancel(ref, force=True)  # ends their worker processes
                ray.wait(list(in_flight), num_returns=len(in_flight), timeout=10)  # gone before their files go
        except (KeyboardInterrupt, Exception):  # noqa: BLE001 - a second Ctrl-C, or a cluster already gone
            pass
        finally:
            sweep_parts(submitted)  # a killed attempt's temporary file, even where the retry succeeded
            if started:
                ray.shutdown()  # disconnects; a local instance started for this run stops with it
    return results
