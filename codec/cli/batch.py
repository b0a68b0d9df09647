"""Planning and running conversions of single files and directory trees.

A plan maps each input to one output; nothing is overwritten unless forced, outputs are written atomically,
one bad input never stops the others, and results come back as plain records for the CLI's summary.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from neuralcodec.errors import GPU_OUT_OF_MEMORY, PIXEL_LIMIT
from neuralcodec.format.imaging import READ_EXTENSIONS

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


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    problems: list[Result] = field(default_factory=list)  # inputs refused before any work (name clashes)


HINTS = {  # what the command line can do about an error the library names (neuralcodec.errors)
    PIXEL_LIMIT: "--max-pixels raises the limit",
    GPU_OUT_OF_MEMORY: "try --device cpu",
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
        out_bytes, pixels = convert(job.src, job.dst, settings)
        return Result(job, True, in_bytes, out_bytes, pixels, time.perf_counter() - t0)
    except (ValueError, OSError) as e:  # ImageError, DecodeError, WeightsError, FormatError are ValueErrors
        return Result(job, False, error=with_hint(e), seconds=time.perf_counter() - t0)
    except (MemoryError, RuntimeError) as e:  # torch reports a failed allocation as a RuntimeError
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not isinstance(e, MemoryError) and not any(m in text.lower() for m in ("out of memory", "allocate")):
            raise
        return Result(job, False, error=f"out of memory ({text[:160]})", seconds=time.perf_counter() - t0)


def _init_worker(threads: int) -> None:
    """A worker's share of the cores, for whichever backend it loads (read by both; torch is not imported here:
    a decode on the ONNX backend never loads it)."""
    os.environ["NEURALCODEC_THREADS"] = str(threads)


def run(jobs: list[Job], direction: str, settings, workers: int = 1, on_result=None) -> list[Result]:
    """Run ``jobs`` with ``workers`` processes, each with ``settings`` (neuralcodec.settings: EncodeSettings to
    compress, DecodeSettings to decompress); ``on_result`` is called as each finishes."""
    results = []
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            r = _run_one(job, direction, settings)
            results.append(r)
            if on_result:
                on_result(r)
        return results
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed  # only with workers: start-up counts

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(_run_one, job, direction, settings) for job in jobs]
        for fut in as_completed(futures):
            r = fut.result()
            results.append(r)
            if on_result:
                on_result(r)
    return results
