"""Planning and running conversions of single files and directory trees.

A plan maps each input to one output; nothing is overwritten unless forced, outputs are written atomically,
one bad input never stops the others, and results come back as plain records for the CLI's summary.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from neuralcodec.errors import GPU_OUT_OF_MEMORY, NIC_INPUT, PIXEL_LIMIT, NeuralcodecError
from neuralcodec.format.bitstream import DEFAULT_MAX_PIXELS, parse_header
from neuralcodec.format.imaging import READ_EXTENSIONS, image_size
from neuralcodec.settings import resolve_backend, usable_cores

NIC = ".nic"


@dataclass
class Job:
    src: Path
    dst: Path


@dataclass
class Result:
    job: Job
    ok: bool
    in_bytes: int = 0
    out_bytes: int = 0
    pixels: int = 0
    seconds: float = 0.0
    error: str = ""
    skipped: bool = False
    note: str = ""  # e.g. the quality a size target found


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    problems: list[Result] = field(default_factory=list)  # inputs refused before any work (name clashes)


HINTS = {  # what the command line can do about an error the library names (neuralcodec.errors)
    PIXEL_LIMIT: "--max-pixels raises the limit",
    GPU_OUT_OF_MEMORY: "try --device cpu",
    NIC_INPUT: "use neuralcodec decompress",
}


def with_hint(e: Exception) -> str:
    """The error's message, plus what a flag can do about it."""
    hint = HINTS.get(getattr(e, "reason", None))
    return f"{e} ({hint})" if hint else str(e)


def _walk(root: Path, recursive: bool, extensions: tuple[str, ...]) -> list[Path]:
    if not recursive:
        files = [p for p in root.iterdir() if p.is_file()]
    else:
        files = [Path(d) / f for d, _, names in os.walk(root) for f in names]  # never follows symlinked dirs
    return sorted(p for p in files if p.suffix.lower() in extensions and not p.name.startswith("."))


def _inside(dst: Path, real_root: Path) -> bool:
    """True if ``dst`` (resolved through any symlinked directories, or a symlink itself) stays under the root."""
    target = dst.resolve() if dst.is_symlink() else dst.parent.resolve() / dst.name
    return target.is_relative_to(real_root)


def plan(src: Path, out: str | Path | None, direction: str, recursive: bool, out_ext: str = ".png") -> Plan:
    """``direction`` is 'compress' or 'decompress'. A file maps to a file (or into ``out`` if it is a
    directory); a directory maps to a mirrored tree under ``out`` (default: beside the inputs)."""
    new_ext = NIC if direction == "compress" else out_ext
    exts = READ_EXTENSIONS if direction == "compress" else (NIC,)
    p = Plan()
    into_dir = out is not None and (str(out).endswith(("/", os.sep)) or Path(out).is_dir())
    out = Path(out) if out is not None else None
    if src.is_file():
        if out is None:
            dst = src.with_suffix(new_ext)
        elif into_dir:
            dst = out / (src.stem + new_ext)
        else:
            dst = out
        p.jobs.append(Job(src, dst))
        return p
    root_out = out if out is not None else src
    real_root = root_out.resolve()
    seen: dict[Path, Path] = {}
    for f in _walk(src, recursive, exts):
        rel = f.relative_to(src)
        dst = (root_out / rel).with_suffix(new_ext)
        if not _inside(dst, real_root):
            p.problems.append(Result(Job(f, dst), False, error=f"output {dst} would land outside {root_out} "
                                                                "(a symlink in the output tree); not written"))
            continue
        if dst in seen:
            p.problems.append(Result(Job(f, dst), False, error=f"output {dst} would also come from {seen[dst]}"))
            continue
        seen[dst] = f
        p.jobs.append(Job(f, dst))
    return p


def _run_one(job: Job, direction: str, settings) -> Result:
    from neuralcodec import api

    t0 = time.perf_counter()
    try:
        in_bytes = job.src.stat().st_size
        convert = api.compress_file if direction == "compress" else api.decompress_file
        w = convert(job.src, job.dst, settings)
        return Result(job, True, in_bytes, w.out_bytes, w.pixels, time.perf_counter() - t0, note=w.note)
    except (ValueError, OSError, NeuralcodecError) as e:  # ImageError, DecodeError, WeightsError, FormatError...
        return Result(job, False, error=with_hint(e), seconds=time.perf_counter() - t0)
    except (MemoryError, RuntimeError) as e:  # torch reports a failed allocation as a RuntimeError
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, MemoryError) or any(m in text.lower() for m in ("out of memory", "allocate")):
            return Result(job, False, error=f"out of memory ({text[:160]})", seconds=time.perf_counter() - t0)
        return Result(job, False, error=f"internal error: {type(e).__name__}: {text[:200]}",
                      seconds=time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - one bad file never takes the others down: it is reported, they go on
        text = str(e).splitlines()[0] if str(e) else ""
        return Result(job, False, error=f"internal error: {type(e).__name__}: {text[:200]}",
                      seconds=time.perf_counter() - t0)


WORKER_PIXELS = 2_000_000  # -j auto: input pixels that pay for one more worker's start (~0.5 s: imports, weights,
# sessions, OpenVINO's compile from its cache), about five Kodak images' work on one core; bench/README.md,
# "Speed beside AVIF and JPEG XL", session 21
WORKER_MEMORY = 2 << 30  # a worker's peak on the biggest images (tiles bound it; issue 23's 2 GiB bound)
HEADER_BYTES = 4096  # read of a .nic file for its size: the header takes under 100 bytes


def _pixels(job: Job, direction: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """An input's pixel count from its header alone (0 where the header cannot be read: its run reports why)."""
    if direction == "compress":
        size = image_size(job.src, max_pixels)
        return size[0] * size[1] if size else 0
    try:
        with open(job.src, "rb") as f:
            header = parse_header(f.read(HEADER_BYTES), max_pixels)[0]
    except (OSError, ValueError):  # FormatError is a ValueError
        return 0
    return header.width * header.height


def _available_memory() -> int | None:
    """Memory this process could still take: the system's available memory, or less where a cgroup (v2: a
    container's limit) leaves less; None where neither is known."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(0, min(found)) if found else None


def auto_workers(jobs: list[Job], direction: str, settings) -> int:
    """How many worker processes ``-j auto`` runs ``jobs`` in: one per WORKER_PIXELS of input, at most one per
    usable core and one per WORKER_MEMORY of available memory; one where the transforms run on torch (a GPU, or
    an encoder effort: each worker would import torch and share the one device). Weights whose ONNX export fails
    fall back to torch in each worker, which this cannot know beforehand."""
    cores = usable_cores()
    if cores == 1 or len(jobs) < 2 or resolve_backend(settings) == "torch":
        return 1
    memory = _available_memory()
    cap = min(cores, len(jobs), max(1, memory // WORKER_MEMORY) if memory is not None else cores)
    limit = getattr(settings, "max_pixels", DEFAULT_MAX_PIXELS)
    total = 0
    for job in jobs:  # headers only, and no more of them than the cap needs
        total += _pixels(job, direction, limit)
        if total >= cap * WORKER_PIXELS:
            return cap
    return max(1, total // WORKER_PIXELS)


GRACE_SECONDS = 3.0  # after a Ctrl-C, how long the files in flight may take to finish before they are dropped


def _init_worker(threads: int) -> None:
    """A worker's share of the cores, for whichever backend it loads (read by both; torch is not imported here:
    a decode on the ONNX backend never loads it). Workers ignore Ctrl-C: the main process decides (``run``)."""
    import signal

    from neuralcodec.settings import command_line_process

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["NEURALCODEC_THREADS"] = str(threads)
    command_line_process()


CRASH_ENV = "NEURALCODEC_TEST_CRASH"  # fault injection for tests: a worker process (local or Ray) converting a
# file whose name matches this glob kills itself, as the kernel's out-of-memory killer would; never set by the CLI
DIED_TWICE = "not converted: its worker process died twice (out of memory or killed?)"


def run_in_worker(job: Job, direction: str, settings) -> Result:
    """One file in a worker process (local or on a cluster)."""
    pattern = os.environ.get(CRASH_ENV)
    if pattern and fnmatch.fnmatch(job.src.name, pattern):
        os.kill(os.getpid(), signal.SIGKILL)
    return _run_one(job, direction, settings)


def sweep_parts(jobs: list[Job]) -> None:
    """Remove the temporary files (write_atomic's) that killed workers left for ``jobs``' outputs, the only trace
    a killed worker can leave; each output directory is listed once (not once per file)."""
    by_dir: dict[Path, set[str]] = {}
    for job in jobs:
        by_dir.setdefault(job.dst.parent, set()).add(job.dst.name)
    for d, names in by_dir.items():
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:  # write_atomic's temporary names: .NAME.RANDOM.part
            if e.name.startswith(".") and e.name.endswith(".part") and e.name[1:-5].rpartition(".")[0] in names:
                Path(e.path).unlink(missing_ok=True)


def drive(in_flight: dict, submit, wait_some, collect, window: int, grace_errors=()) -> None:
    """The dispatch loop of both runners (local processes, Ray tasks): ``window`` files in flight, each finished
    one (``wait_some(timeout)`` returns them, ``collect`` reports them and takes them out of ``in_flight``)
    replaced by the next (``submit``). On Ctrl-C nothing new starts and the files in flight get GRACE_SECONDS to
    finish; a second Ctrl-C (or one of ``grace_errors``) ends the wait; then KeyboardInterrupt is re-raised for
    the caller to end what is still in flight."""
    try:
        for _ in range(window):
            submit()
        while in_flight:
            ready = wait_some(None)
            collect(ready)
            for _ in ready:
                submit()
    except KeyboardInterrupt:
        try:
            deadline = time.monotonic() + GRACE_SECONDS
            while in_flight and time.monotonic() < deadline:
                collect(wait_some(max(0.0, deadline - time.monotonic())))
        except (KeyboardInterrupt, *grace_errors):
            pass  # a second Ctrl-C: no more waiting
        raise KeyboardInterrupt from None


def run(jobs: list[Job], direction: str, settings, workers: int = 1, on_result=None) -> list[Result]:
    """Run ``jobs`` with ``workers`` processes, each with ``settings`` (neuralcodec.settings: EncodeSettings to
    compress, DecodeSettings to decompress); ``on_result`` is called as each finishes.

    A worker process that dies (killed, out of memory) breaks its pool: the pool is started again and the files
    that were in flight are run once more, each alone, so that one whose worker dies again is known to be the
    cause and reported as failed while every other file is converted.

    Ctrl-C (KeyboardInterrupt, re-raised once handled): no new file starts; the files in flight get
    GRACE_SECONDS to finish (their outputs are complete), then their workers are ended and their temporary files
    removed; a second Ctrl-C ends them at once. No output is ever half-written."""
    results = []

    def done(r):
        results.append(r)
        if on_result:
            on_result(r)

    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            done(_run_one(job, direction, settings))
        return results
    queue = list(reversed(jobs))  # popped from the end
    suspects: list[Job] = []  # in flight when a worker died: each runs again alone
    while queue or suspects:
        if suspects:
            job = suspects.pop()
            if _run_pool([job], direction, settings, 1, done):
                done(Result(job, False, error=DIED_TWICE))
        else:
            suspects = _run_pool(queue, direction, settings, workers, done)
    return results


def _run_pool(jobs: list[Job], direction: str, settings, workers: int, done) -> list[Job]:
    """Run ``jobs`` (popped from the end, so the caller sees what is left) in a pool of ``workers``
    processes until they are done or a worker dies; returns the jobs that were in flight when one died (their
    temporary files removed), [] when all finished."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait  # only with workers: start-up counts
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, usable_cores() // workers)
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                               initargs=(threads,))
    in_flight: dict = {}
    broken: list[Job] = []

    def submit():  # one file per free worker: nothing queued that a Ctrl-C would have to cancel
        if jobs:
            job = jobs.pop()
            try:
                in_flight[pool.submit(run_in_worker, job, direction, settings)] = job
            except BrokenProcessPool:
                jobs.append(job)
                raise

    def collect(futures):
        dead = False
        for fut in futures:  # every finished file is reported before a dead worker stops the pool
            try:
                r = fut.result()
            except BrokenProcessPool:
                dead = True
                continue
            in_flight.pop(fut)
            done(r)
        if dead:
            raise BrokenProcessPool("a worker process died")

    try:
        drive(in_flight, submit, lambda timeout: wait(in_flight, timeout, FIRST_COMPLETED)[0], collect, workers,
              (BrokenProcessPool,))
    except BrokenProcessPool:
        broken = list(in_flight.values())
        in_flight.clear()
    finally:
        dropped = [*in_flight.values(), *broken]
        if in_flight:
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        sweep_parts(dropped)
    return broken
