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

import os

from neuralcodec.cli.batch import DIED_TWICE, Job, Result, drive, remove_parts, run_in_worker
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
    """Ray, initialized: connected to the cluster at ``address`` (``auto``: the one this machine runs), or to
    ``RAY_ADDRESS``'s, or else a local instance started for this run. Returns the ray module."""
    try:
        import ray
    except ImportError:
        raise EngineError(f"--engine ray needs Ray: {INSTALL}") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # an offline tool: no usage reports unless asked for
    if address not in (None, "auto", "local"):
        _check_reachable(address)
    if not ray.is_initialized():
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"at {address}" if address else "(none running here; a local one could not start)"
            raise EngineError(f"cannot reach a Ray cluster {where}: {str(e).splitlines()[0][:200]}") from None
    return ray


def _check_reachable(address: str, seconds: float = 5.0) -> None:
    """A wrong or dead ``address`` fails in seconds (Ray itself retries for minutes)."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(f"--address {address!r}: give HOST:PORT of the cluster's head (or auto)")
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
    gpus = int(resources.get("GPU", 0)) if device == "auto" or str(device).startswith("cuda") else 0
    if gpus:
        return gpus, 1
    return max(1, int(resources.get("CPU", 1))), 0


def run(jobs: list[Job], direction: str, settings, address: str | None = None, in_flight_max: int | None = None,
        on_result=None) -> list[Result]:
    """Run ``jobs`` as Ray tasks, at most ``in_flight_max`` at once (default: the cluster's CPUs, or its GPUs
    when it has some and ``settings.device`` allows a GPU); ``on_result`` is called as each finishes.

    Each task takes one CPU (its conversion runs one thread) or one GPU. A task whose worker dies is run once
    more; a second death reports the file as failed. Ctrl-C (KeyboardInterrupt, re-raised once handled): nothing
    new starts, files in flight get GRACE_SECONDS to finish, then their tasks are cancelled and their temporary
    files removed; a second Ctrl-C cancels them at once."""
    ray = connect(address)
    results: list[Result] = []

    def done(r):
        results.append(r)
        if on_result:
            on_result(r)

    slots, gpus_per_task = placement(ray.cluster_resources(), getattr(settings, "device", "auto"))
    task = ray.remote(_convert).options(max_retries=1, retry_exceptions=False, num_cpus=1, num_gpus=gpus_per_task,
                                        name="neuralcodec-convert")
    queue = iter(jobs)
    in_flight: dict = {}

    def submit():
        job = next(queue, None)
        if job is not None:
            in_flight[task.remote(job, direction, settings, 1)] = job

    def collect(refs):
        for ref in refs:
            job = in_flight.pop(ref)
            try:
                r = ray.get(ref)
            except ray.exceptions.TaskCancelledError:
                r = None
            except ray.exceptions.RayError as e:  # its worker died twice (killed, out of memory), or its node did
                r = Result(job, False, error=f"{DIED_TWICE} ({type(e).__name__})")
            remove_parts(job)  # an attempt whose worker died may have left one, even when the retry succeeded
            if r is not None:
                done(r)

    try:  # a short queue per slot by default: no idle gap between files
        drive(in_flight, submit, lambda timeout: ray.wait(list(in_flight), num_returns=1, timeout=timeout)[0],
              collect, in_flight_max or slots * 2)
    finally:
        if in_flight:
            for ref in in_flight:
                ray.cancel(ref, force=True)  # ends their worker processes
            ray.wait(list(in_flight), num_returns=len(in_flight), timeout=10)  # gone before their files are removed
            for job in in_flight.values():
                remove_parts(job)
        ray.shutdown()  # disconnects; a local instance started by connect() stops with it
    return results
