"""The transforms on ONNX Runtime: the CPU default, about twice torch's speed, and no torch in the process.

A *bundle* per weights digest holds the model's networks as ONNX graphs (analysis, the levels above y,
synthesis) and its ``ModelSpec`` (spec.json). It is built once, with torch and the onnx package, the first time
a weights file is used on this backend, checked against torch on an image size it was not traced at, and kept
in the user's cache (``$NEURALCODEC_CACHE_DIR``, else ``$XDG_CACHE_HOME/neuralcodec``, else
``~/.cache/neuralcodec``); every later process decodes with numpy, constriction and onnxruntime alone.
The entropy coding is the same exact integer code on every backend, so files decode to the same latents
whichever backend made or reads them; pixels differ from torch's by at most 1 (float summation order).

Where OpenVINO is installed (``pip install 'neuralcodec[openvino]'``) and the CPU multiplies bfloat16 in hardware
(AMX or AVX512-BF16), the encoder's analysis can run in bfloat16 on it instead (``analysis_precision="bf16"``):
the analysis only makes the encoder's y, so its precision moves a few rounded values of y (0.12 % on Kodak, +0.13 %
of bits), not the format; measured in `bench/experiments/bf16_analysis.py`. Decoding always runs float32.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from neuralcodec.errors import NeuralcodecError
from neuralcodec.pipeline.spec import ModelSpec
from neuralcodec.pipeline.tiling import TiledTransforms

BUNDLE_VERSION = 2  # bump when the graphs or the spec change: old bundles are then rebuilt
OPSET = 17
SHRINK_PIXELS = 1 << 24  # 16.8 Mpx: above it an analysis run hands its arena back (OrtTransforms._memory)
CHECK_TOLERANCE = 1e-3  # max |ORT - torch| on the check image, relative to the output's magnitude


class BackendError(NeuralcodecError, RuntimeError):
    """The ONNX backend cannot run these weights here (onnxruntime or onnx missing, an export that fails or
    disagrees with torch); the torch backend still can."""


@functools.lru_cache(maxsize=1)
def bf16_analysis_available() -> bool:
    """Whether the analysis can run in bfloat16 here: OpenVINO importable (not imported) and a CPU with bfloat16
    arithmetic (Linux cpuinfo flags amx_bf16 or avx512_bf16)."""
    import importlib.util

    from neuralcodec.settings import native_cpu_bf16

    return importlib.util.find_spec("openvino") is not None and native_cpu_bf16()


def skip_model_converter() -> None:
    """For a process the command line owns (``settings.command_line_process``), before OpenVINO is imported: its
    package imports its model converter (``openvino.tools.ovc``, for models of other frameworks; never used here)
    unless that import fails, which it catches. Marking the converter absent halves OpenVINO's import: 0.10 -> 0.05
    s per compress call and per -j worker (five alternating imports, training paused; bench/README.md). Not for
    library callers, whose process may want ``openvino.convert_model``."""
    import sys

    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino.tools.ovc", None)


def available() -> bool:
    """Whether onnxruntime is importable (cheap: no import)."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def cache_dir() -> Path:
    if os.environ.get("NEURALCODEC_CACHE_DIR"):
        return Path(os.environ["NEURALCODEC_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "neuralcodec"


@functools.lru_cache(maxsize=1)
def code_key() -> str:
    """What the graphs and the spec are made by: this package's version and the source of the models, the
    exporter and the spec (a change to any of them is a new bundle, never a stale one), and torch's version."""
    import hashlib

    import neuralcodec
    import neuralcodec.models

    h = hashlib.sha256(f"{neuralcodec.__version__} {BUNDLE_VERSION} {OPSET}".encode())
    h.update(_torch_version_file())
    sources = sorted(Path(neuralcodec.models.__file__).parent.glob("*.py"))
    sources += [Path(__file__), Path(__file__).with_name("spec.py")]
    for src in sources:
        h.update(src.name.encode() + src.read_bytes())
    return h.hexdigest()[:12]


def _torch_version_file() -> bytes:
    """torch's ``torch/version.py`` (its version, git revision and CUDA build), read without importing torch or
    ``importlib.metadata`` (which imports the email package: 0.045 s of every one-image call); b"" without torch."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return b""
    for location in (spec.submodule_search_locations or []) if spec else []:
        version = Path(location) / "version.py"
        if version.is_file():
            return version.read_bytes()
    return b""


def bundle_path(digest: bytes) -> Path:
    return cache_dir() / "onnx" / f"{digest.hex()[:32]}-{code_key()}"


def threads() -> int:
    """Threads per process for the transforms: a -j worker's share, else the cores this process may use."""
    from neuralcodec.settings import process_threads

    return process_threads()


# -- building (torch + onnx) --------------------------------------------------------------------------------
def build(weights, directory: Path | None = None) -> Path:
    """Export ``weights``' networks to ONNX and check them against torch; returns the bundle directory.

    Atomic: built in a temporary directory beside the cache entry and renamed into place, so concurrent
    processes never read half a bundle; and one at a time (a lock file beside it), so the workers of a -j batch
    or of a cluster node that start together wait for the first build instead of each repeating it."""
    target = directory or bundle_path(weights.digest)
    if (target / "spec.json").is_file():
        return target
    with _build_lock(target):
        if (target / "spec.json").is_file():  # built while this process waited
            return target
        if _failed(target).is_file():
            raise BackendError(_failed(target).read_text(errors="replace")[:300])
        return _build(weights, target)


@contextlib.contextmanager
def _build_lock(target: Path):
    """An exclusive lock on ``target``'s build (where the system offers file locks; else none: still correct)."""
    try:
        import fcntl

        target.parent.mkdir(parents=True, exist_ok=True)
        f = open(target.with_name(target.name + ".lock"), "a")
    except (ImportError, OSError):  # no fcntl (Windows) or a read-only cache: _build reports the cache
        yield
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (some NFS and FUSE mounts): build unlocked, still correct
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build(weights, target: Path) -> Path:
    try:
        import onnx  # noqa: F401 - torch's exporter needs it
        import torch  # noqa: F401
    except ImportError as e:
        raise BackendError(f"building the ONNX runtime needs the onnx package ({e}); pip install 'onnx<1.18'") from None
    from neuralcodec.zoo import weights_io

    model = weights_io.build_model(weights).requires_grad_(False)
    spec = ModelSpec.of(model, weights.arch)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    except OSError as e:  # a read-only or odd cache: this process stays on torch
        raise BackendError(f"cannot write the ONNX cache {target.parent}: {e}") from None
    try:
        (tmp / "spec.json").write_text(spec.to_json())
        try:
            _export(model, spec, tmp, encoder=not weights.decoder_only)
            _check(model, spec, tmp, encoder=not weights.decoder_only)
        except BackendError:  # the late-shuffle synthesis traced but disagrees with torch: the plain form
            _export(model, spec, tmp, encoder=not weights.decoder_only, late=False)
            _check(model, spec, tmp, encoder=not weights.decoder_only)
        try:
            os.rename(tmp, target)
        except OSError:  # another process built it first
            if not (target / "spec.json").is_file():
                raise
    except (MemoryError, OSError) as e:  # passing causes (memory, a full disk): retried by the next process
        raise BackendError(f"cannot build the ONNX graphs of {weights.arch}: {type(e).__name__}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the exporter fails or disagrees with torch: this model stays on torch
        error = e if isinstance(e, BackendError) else BackendError(
            f"cannot export {weights.arch} to ONNX: {type(e).__name__}: {str(e)[:200]}")
        try:  # not retried by every process (a new version or model source is a new bundle path: tried again)
            _failed(target).write_text(str(error))
        except OSError:
            pass
        raise error from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def analysis_bands(spec: ModelSpec) -> range:
    """The analyses of a model: one, or two where the top rates have their own (``spec.top_from``)."""
    return range(1 if spec.top_from is None else 2)


def graph_name(name: str, band: int) -> str:
    """The bundle's graph of the encoder network ``name`` (analysis, upper) for rate band ``band``."""
    return name if band == 0 else f"{name}_top"


def _export(model, spec: ModelSpec, out: Path, encoder: bool, late: bool = True) -> None:
    """The bundle's graphs of ``model`` into ``out``; the synthesis with its last big shuffle left out where it
    traces (``late``: layers.late_shuffles), else as it is."""
    import copy

    import torch

    from neuralcodec.models.layers import late_shuffles, subpixel_deconvs

    model = subpixel_deconvs(copy.deepcopy(model))  # transposed convolutions as convolutions + pixel shuffles
    late_form = late_shuffles(copy.deepcopy(model)) if late else None  # and the last big shuffle left out where it
    # can be (the synthesis)

    class Method(torch.nn.Module):
        """One of a model's methods as a module: one graph each."""

        def __init__(self, name: str, of=model):
            super().__init__()
            self.m, self.name = of, name

        def forward(self, *args):
            out = getattr(self.m, self.name)(*args)
            return tuple(out) if type(out) is list else out  # a list of levels (not the phases of an image)

    px = 4 * spec.stride  # traced at 4x4 of the coarsest latents; dynamic in batch, height and width
    x = torch.rand(1, 3, px, px)
    t = torch.full((1,), 0.5)
    with torch.no_grad():
        y = model.analysis(x, t) if encoder else None
        levels = {lv.name: lv for lv in spec.levels}
        shapes = [(1, levels[n].channels, px // levels[n].downsampling, px // levels[n].downsampling)
                  for n in spec.synthesis_levels]
        hats = [torch.randint(0, 2, s).float() if levels[n].kind == "categorical" else torch.randn(s)
                for n, s in zip(spec.synthesis_levels, shapes)]
    dyn = {0: "n", 2: "h", 3: "w"}
    # each graph from the first of its forms that traces: the synthesis with its last big shuffle left out, else (a
    # model whose own code between its layers does more than a product) as it is; _check then compares with torch
    jobs = [("synthesis", ([Method("synthesis", late_form)] if late else []) + [Method("synthesis")], (*hats, t),
             [f"hat{i}" for i in range(len(hats))], ["x"])]
    for band in analysis_bands(spec) if encoder else ():  # each analysis as graphs of its own: a model of one band each
        view = model.band_view(band) if spec.top_from is not None else model
        jobs.append((graph_name("analysis", band), [Method("analysis", view)], (x, t), ["x"], ["y"]))
        if len(spec.levels) > 1:
            n_up = len(spec.levels) - 1
            jobs.append((graph_name("upper", band), [Method("upper_levels", view)], (y, t), ["y"],
                         [f"u{i}" for i in range(n_up)]))
    for name, forms, args, inputs, outputs in jobs:
        axes = {k: dyn for k in inputs + outputs}
        axes["t"] = {0: "n"}
        for module in forms:
            try:
                _export_graph(module, args, out / f"{name}.onnx", inputs + ["t"], outputs, axes)
                break
            except Exception:  # noqa: BLE001 - the next form; the last one's error is the build's
                if module is forms[-1]:
                    raise


def _export_graph(module, args, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> None:
    """``module``'s graph to ``path``, if what it computes for ``args`` is one tensor per output."""
    import warnings

    import torch

    with torch.no_grad():
        out = module(*args)
    if not all(isinstance(o, torch.Tensor) for o in (out if isinstance(out, tuple) else (out,))):
        raise TypeError(f"{path.stem}: a traced form gave {type(out).__name__}, not tensors")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), dynamo=False, opset_version=OPSET, input_names=inputs,
                          output_names=outputs, dynamic_axes=axes)


def _check(model, spec: ModelSpec, directory: Path, encoder: bool) -> None:
    """The graphs must compute what torch computes at a size they were not traced at."""
    import torch

    tr = OrtTransforms(spec, directory)
    rng = np.random.default_rng(0)
    s = spec.stride
    x = rng.random((1, 3, 3 * s, 5 * s), np.float32)
    t = 0.3
    tt = torch.full((1,), t)
    pairs = []
    with torch.no_grad():
        levels = {lv.name: lv for lv in spec.levels}
        for band in analysis_bands(spec) if encoder else ():
            # a rate of the band: the middle of [t_min, top_from) or [top_from, 1]
            tb = t if spec.top_from is None else (spec.top_from + (spec.t_min, 1.0)[band]) / 2
            y = model.analysis(torch.from_numpy(x), torch.full((1,), tb))
            pairs.append((tr._analysis(x, tb), y.numpy()))
            if len(spec.levels) > 1:
                for a, b in zip(tr._upper_levels(y.numpy(), tb), model.upper_levels(y, torch.full((1,), tb))):
                    pairs.append((a, b.numpy()))
        hats = []
        for n in spec.synthesis_levels:
            lv = levels[n]
            shape = (1, lv.channels, 3 * s // lv.downsampling, 5 * s // lv.downsampling)
            hats.append(np.round(rng.normal(0, 2, shape)).astype(np.float32) if lv.kind != "categorical"
                        else rng.integers(0, 2, shape).astype(np.float32))
        pairs.append((tr._synthesis(hats, t), model.synthesis(*map(torch.from_numpy, hats), tt).numpy()))
    for a, b in pairs:
        if a.shape != b.shape or np.abs(a - b).max() > CHECK_TOLERANCE * max(1.0, float(np.abs(b).max())):
            raise BackendError(f"the ONNX graphs of {spec.arch} disagree with torch "
                               f"(shapes {a.shape} / {b.shape}, max difference "
                               f"{float(np.abs(a - b).max()) if a.shape == b.shape else float('nan'):.3g})")


# -- running (onnxruntime + numpy) --------------------------------------------------------------------------
class OrtTransforms(TiledTransforms):
    """The bundle's graphs on ONNX Runtime's CPU provider; sessions open on first use (a decoder never loads
    the analysis)."""

    backend = "onnx"
    device = None  # always the CPU

    def __init__(self, spec: ModelSpec, directory: Path, analysis_precision: str = "fp32"):
        super().__init__(spec)
        if analysis_precision not in ("fp32", "bf16"):
            raise ValueError(f"analysis precision fp32 or bf16, not {analysis_precision!r}")
        if analysis_precision == "bf16" and not bf16_analysis_available():
            raise BackendError("a bfloat16 analysis needs OpenVINO (pip install 'neuralcodec[openvino]') and a CPU "
                               "with bfloat16 arithmetic (AMX or AVX512-BF16)")
        self.directory = directory
        self.analysis_precision = analysis_precision
        self._openvino = {}  # graph name -> the compiled bfloat16 analysis (OpenVINO), made on first use
        self._requests = threading.local()  # an OpenVINO infer request per thread (they are not shared)
        self._sessions: dict = {}
        self._many = False  # this process codes many images: a one-tile analysis keeps the arena too
        self._policy = threading.local()  # per thread: whether this call's runs use the sessions with ONNX
        # Runtime's memory arena (``arena``) and hand its free memory back after each run (``shrink``)

    @property
    def _arena(self) -> bool:
        return getattr(self._policy, "arena", False)

    @property
    def _shrink(self) -> bool:
        return getattr(self._policy, "shrink", False)

    def _memory(self, arena: bool, shrink: bool, run, *args):
        """``run(*args)`` on the sessions with ONNX Runtime's memory arena or without (``arena``); with ``shrink``
        each run also hands the arena's free memory back, so a huge image's analysis arena does not sit beside its
        latents (8192^2 compress peak 2401 -> 1422 MiB). Measured in fresh processes on Kodak (bench/README.md,
        "Big images"): the analysis of one tile without the arena peaks at 322 MiB instead of 437 (0.09 s slower;
        issue 23's bound is 400 MB), several tiles with it run 1.6x faster (2048^2); the synthesis with it is
        faster and no bigger (0.85 s against 1.0 s a decode), and never shrinks: a 6144^2 decode took 55.6 s and
        1.37 GB shrinking after each run, 48.5 s and 1.31 GB keeping it (the tiles reuse the same buffers). A
        process that codes a second image (a directory run, a server: ``many_images``) is past one call's memory
        bound and keeps the arena for every analysis from then on: 0.36 s against 0.47 s an encode of a Kodak
        image (bench/README.md)."""
        self._policy.arena, self._policy.shrink = arena, arena and shrink
        try:
            return run(*args)
        finally:
            self._policy.arena = self._policy.shrink = False

    def many_images(self) -> None:
        self._many = True
        for band in analysis_bands(self.spec):  # not used again (a run in progress holds its own reference)
            self._sessions.pop((graph_name("analysis", band), False), None)

    def analysis(self, rgb, t, tile=None):
        yh, yw = self.latent_size(*rgb.shape[:2])
        up = self.levels[-1].downsampling
        return self._memory(self._many or max(yh, yw) > self.tile_geometry(tile)[0],
                            yh * yw * up * up > SHRINK_PIXELS, super().analysis, rgb, t, tile)

    def synthesis(self, hats, t, height, width, geometry=None):
        return self._memory(True, False, super().synthesis, hats, t, height, width, geometry)

    def _session(self, part: str):
        key = (part, self._arena)
        entry = self._sessions.get(key)  # one read: another thread may drop a session meanwhile (many_images)
        if entry is None:
            import onnxruntime as ort

            path = self.directory / f"{part}.onnx"
            if not path.is_file():
                raise BackendError(f"{self.model_id}: no {part} graph in {self.directory} (a decoder-only archive "
                                   "cannot encode)")
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads()
            so.inter_op_num_threads = 1
            so.enable_mem_pattern = False  # planned buffers for every tensor at once: +170 MB on Kodak, no speed
            so.enable_cpu_mem_arena = self._arena  # see _memory
            # workers spin between a run's operators but stop when it ends: an encode's numpy work (the integer
            # prior's two BLAS threads) follows the analysis, and a spinning worker took a core from it (kodim05 in
            # process, medians of 3 fresh processes: encode 0.370 -> 0.340 s, decode 0.414 -> 0.422 s; no spinning
            # at all: 0.350 / 0.436 s; bench/experiments/ort_spinning.py)
            so.add_session_config_entry("session.force_spinning_stop", "1")
            so.log_severity_level = 3
            try:
                s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            except Exception as e:  # noqa: BLE001 - a truncated or foreign graph in the cache
                raise BackendError(f"cannot load {path}: {str(e)[:200]}; delete {self.directory} to rebuild") from None
            entry = (s, {i.name for i in s.get_inputs()})
            self._sessions[key] = entry
        return entry

    def _run(self, part: str, feeds: dict, t: float, n: int) -> list[np.ndarray]:
        s, names = self._session(part)
        feeds = {**feeds, "t": np.full((n,), t, np.float32)}
        options = None
        if self._shrink:
            import onnxruntime as ort

            options = ort.RunOptions()
            options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        try:
            return s.run(None, {k: np.ascontiguousarray(v) for k, v in feeds.items() if k in names}, options)
        except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types: named as ours
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            if any(m in text.lower() for m in ("alloc", "memory")):
                raise MemoryError(f"ONNX Runtime: {text[:200]}") from None
            raise BackendError(f"ONNX Runtime failed on {part}: {text[:200]}") from None

    def _analysis(self, x, t):
        if self.analysis_precision == "bf16":
            return self._analysis_bf16(x, t)
        return self._run(graph_name("analysis", self.spec.band(t)), {"x": x}, t, len(x))[0]

    def _compile_bf16(self, name: str, cache: bool):
        """The analysis graph compiled by OpenVINO for bfloat16; ``cache``: load or store the compiled form in the
        bundle's openvino/ folder (skipped where that folder cannot be written)."""
        import openvino as ov
        from openvino.preprocess import PrePostProcessor

        core = ov.Core()
        if cache:
            try:
                core.set_property({"CACHE_DIR": str(self.directory / "openvino")})
            except Exception:  # noqa: BLE001 - a read-only cache: compile every time, still correct
                pass
        # the graph reads pixels 0..255, exact in bfloat16, and OpenVINO folds the / 255 into the first convolution's
        # float32 weights; pixels in [0, 1] would be rounded to bfloat16 first (Kodak, t = 0.5: 0.107 % of y's
        # rounded values moved instead of 0.143 %; bench/README.md)
        ppp = PrePostProcessor(core.read_model(str(self.directory / f"{name}.onnx")))
        ppp.input("x").preprocess().scale(255.0)
        # no pinning: OpenVINO pins its threads to cores, and two -j workers of one thread each both took core 0
        # (Kodak, two processes at once: 0.47 s an image each, unpinned 0.27; bench/experiments/dir_threads.py)
        return core.compile_model(ppp.build(), "CPU", {
            "INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": threads(), "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": False})

    def _analysis_bf16(self, x, t):
        """The analysis graph on OpenVINO in bfloat16 (compiled once; its compiled form cached beside the bundle,
        so a later process loads it in ~0.03 s instead of compiling in ~0.13 s)."""
        name = graph_name("analysis", self.spec.band(t))
        compiled = self._openvino.get(name)
        if compiled is None:
            try:
                compiled = self._compile_bf16(name, cache=True)
            except Exception:  # noqa: BLE001 - e.g. two processes writing the same cache entry at once (the first
                try:  # files of a -j run on a fresh cache: OpenVINO lost a race for the blob's permissions): no cache
                    compiled = self._compile_bf16(name, cache=False)
                except Exception as e:  # noqa: BLE001 - OpenVINO's own exception types: named as ours
                    text = " ".join(str(e).split())[-200:] if str(e) else type(e).__name__
                    raise BackendError(f"OpenVINO cannot compile the analysis: {text}") from None
            self._openvino[name] = compiled
        mine = getattr(self._requests, "entry", None)  # (compiled model, its request) of this thread
        if mine is None or mine[0] is not compiled:
            mine = self._requests.entry = (compiled, compiled.create_infer_request())
        request = mine[1]
        try:
            feeds = {"x": np.rint(x * np.float32(255))}  # the 8-bit values again (x = pixels / 255)
            if any("t" in i.get_names() for i in compiled.inputs):  # fixed-rate models have no t
                feeds["t"] = np.full((len(x),), t, np.float32)
            out = request.infer(feeds)
        except Exception as e:  # noqa: BLE001
            text = " ".join(str(e).split())[-300:] if str(e) else type(e).__name__
            if any(m in text.lower() for m in ("alloc", "memory")):
                raise MemoryError(f"OpenVINO: {text[:200]}") from None
            raise BackendError(f"OpenVINO failed on the analysis: {text[:200]}") from None
        return np.array(out[compiled.outputs[0]])  # a copy: the request's buffer is reused by its next run

    def _upper_levels(self, y, t):
        return self._run(graph_name("upper", self.spec.band(t)), {"y": y}, t, len(y))

    def _synthesis(self, hats, t):
        return self._run("synthesis", {f"hat{i}": h for i, h in enumerate(hats)}, t, len(hats[0]))[0]


def _failed(target: Path) -> Path:
    return target.with_name(target.name + ".failed")


def load(weights, analysis_precision: str = "fp32") -> tuple[ModelSpec, OrtTransforms]:
    """The spec and transforms of ``weights`` from their bundle, built first if there is none; the analysis in
    ``analysis_precision`` (fp32 on ONNX Runtime, or bf16 on OpenVINO: ``bf16_analysis_available``)."""
    if not available():
        raise BackendError("onnxruntime is not installed (pip install onnxruntime)")
    directory = bundle_path(weights.digest)
    if not (directory / "spec.json").is_file():
        if _failed(directory).is_file():
            raise BackendError(_failed(directory).read_text(errors="replace")[:300])
        build(weights, directory)
    try:
        spec = ModelSpec.from_json((directory / "spec.json").read_text())
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise BackendError(f"unreadable ONNX bundle {directory}: {e}; delete it to rebuild") from None
    if spec.arch != weights.arch:
        raise BackendError(f"ONNX bundle {directory} is for {spec.arch}, not {weights.arch}; delete it to rebuild")
    encoder = ("analysis", "upper") if len(spec.levels) > 1 else ("analysis",)
    parts = ["synthesis"] + ([graph_name(p, band) for band in analysis_bands(spec) for p in encoder] if not weights.decoder_only else [])
    missing = [p for p in parts if not (directory / f"{p}.onnx").is_file()]
    if missing:
        raise BackendError(f"ONNX bundle {directory} lacks {', '.join(missing)}; delete it to rebuild")
    return spec, OrtTransforms(spec, directory, analysis_precision)
