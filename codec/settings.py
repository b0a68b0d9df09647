"""The typed settings of the library: one object says how an image is encoded, one how a file is decoded.

The command line maps its flags onto these (neuralcodec.cli.main); the API functions take them as keywords or
as the object itself. Plain values only: they cross process boundaries (directory runs with -j) as they are.
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass

from neuralcodec.format.bitstream import DEFAULT_MAX_PIXELS

DEFAULT_QUALITY = 50.0
PRECISIONS = ("fp32", "fp16")  # of the transforms; the latents' coding is exact integer arithmetic either way
ENCODE_PRECISIONS = ("auto", "fp32", "fp16", "bf16")  # bf16: the analysis only, on a CPU (OpenVINO)
BACKENDS = ("auto", "onnx", "torch")  # what runs the transforms: auto = ONNX Runtime on a CPU, torch on a GPU


@dataclass(frozen=True)
class EncodeSettings:
    """Everything that decides how an image is encoded, checked once when made (ValueError names the field).

    ``quality``: 0..100, the rate selector of a variable-rate model (ignored by a fixed-rate one); ``weights``:
    a shipped name or a path (default: the flagship); ``device``: auto, cpu or cuda; ``tile``: pixels per tile
    side of the transforms (default 1024, less for a model with a wide halo; bigger is faster and costs the decoder
    memory), recorded in
    the file; ``precision``: auto (float32, except the analysis in bfloat16 where OpenVINO is installed and the CPU
    multiplies bfloat16 in hardware: ~0.1 % of y's rounded values move, +0.13 % of bits on Kodak, the analysis 6.5x
    faster), fp32, fp16 (the transforms on a GPU), or bf16 (the analysis in bfloat16, required); the latents' coding
    stays exact;
    ``effort``: 0..9, encode time spent for smaller files at the same quality, decoding unchanged (0: today's
    speed; higher: encoder-side latent refinement, at the top stochastic Gumbel annealing; pipeline.refine.EFFORTS;
    runs on torch); ``target``: a ``ratecontrol.Target`` (a size, bpp or PSNR the file
    must reach: the quality is searched, ``quality`` ignored); ``strip``: leave the image's metadata (ICC
    profile, EXIF, XMP, otherwise carried and written back on decoding) out of the file; ``deblock``: ask
    decoders to smooth the latent grid on flat content (pipeline.deblock; False leaves the header flag unset);
    ``backend``: what runs the transforms (auto: ONNX Runtime on a CPU, torch on a GPU or where ONNX cannot)."""

    quality: float = DEFAULT_QUALITY
    weights: str | None = None
    device: str = "auto"
    tile: int | None = None
    precision: str = "auto"
    effort: int = 0
    backend: str = "auto"
    target: object = None  # a ratecontrol.Target: search the quality instead of using ``quality``
    strip: bool = False  # leave the image's ICC profile, EXIF and XMP out of the file
    deblock: bool = True  # ask decoders to filter across the latent grid (a header flag; pipeline.deblock)

    def __post_init__(self):
        if isinstance(self.quality, bool) or not isinstance(self.quality, numbers.Real) \
                or not 0 <= self.quality <= 100:
            raise ValueError(f"quality must be a number within 0..100, got {self.quality!r}")
        if self.tile is not None and (not isinstance(self.tile, numbers.Integral) or self.tile <= 0):
            raise ValueError(f"tile must be a whole number of pixels, got {self.tile!r}")
        if self.precision not in ENCODE_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(ENCODE_PRECISIONS)}, got {self.precision!r}")
        if self.precision == "bf16" and (self.backend == "torch" or str(self.device).startswith("cuda") or self.effort):
            raise ValueError("precision bf16 runs the analysis on OpenVINO on a CPU: not with backend torch, "
                             "a GPU or effort above 0")
        if isinstance(self.effort, bool) or not isinstance(self.effort, numbers.Integral) or not 0 <= self.effort <= 9:
            raise ValueError(f"effort must be a whole number within 0..9, got {self.effort!r}")
        _check_common(self)
        from neuralcodec.ratecontrol import Target

        if self.target is not None and not isinstance(self.target, Target):
            raise ValueError(f"target must be a ratecontrol.Target, got {type(self.target).__name__}")
        if self.effort and self.backend == "onnx":
            raise ValueError("effort above 0 refines the latents with gradients: use backend torch (or auto)")


@dataclass(frozen=True)
class DecodeSettings:
    """Everything that decides how a file is decoded. ``weights``: None picks the shipped weights whose digest
    the file names; ``perceptual``: their shipped GAN-fine-tuned decoder instead (same latents, sharper
    texture); ``max_pixels``: files describing a bigger image are refused before any work; ``backend`` as for
    encoding (the same latents on every backend; pixels within 1 of each other, except where that tips the
    ramp or deblocking filter on a line); ``deblock``: False decodes without the filters a file asks for (the
    ramp and the deblocking filter)."""

    weights: str | None = None
    device: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    perceptual: bool = False
    precision: str = "fp32"
    backend: str = "auto"
    deblock: bool = True  # apply the filters a file asks for (False: the synthesis' pixels as they are)

    def __post_init__(self):
        if self.perceptual and self.weights is not None:
            raise ValueError("perceptual picks the shipped perceptual decoder: give it or weights, not both")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        _check_common(self)
        if not isinstance(self.max_pixels, numbers.Integral) or self.max_pixels <= 0:
            raise ValueError(f"max_pixels must be a positive whole number, got {self.max_pixels!r}")


def _check_common(s) -> None:
    if s.device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d{1,3}", str(s.device)):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N (a GPU's index), got {s.device!r}")
    if s.backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {s.backend!r}")
    if s.backend == "onnx" and (str(s.device).startswith("cuda") or s.precision == "fp16"):
        raise ValueError("backend onnx runs float32 on the CPU: use backend torch for cuda or fp16")
    if not isinstance(s.deblock, bool):
        raise ValueError(f"deblock must be True or False, got {s.deblock!r}")


def worker_threads() -> int | None:
    """A -j worker's share of the cores (``NEURALCODEC_THREADS``, set by the batch runner), or None."""
    import os

    value = os.environ.get("NEURALCODEC_THREADS", "")
    return max(1, int(value)) if value.isdigit() else None


def process_threads() -> int:
    """Threads this process gives one image's work (transforms, filters, PNG writer): a -j worker's share, else
    the cores it may use."""
    return worker_threads() or usable_cores()


def command_line_process() -> None:
    """What the command line sets in a process it owns, before the codec's libraries load: a compress or decompress
    call and each of its local -j workers (not Ray's, not a library caller's, not train's).

    - numpy's OpenBLAS on one thread: its second thread spun after the 8-bit prior's small float64 products and took
      a core from the transforms (24 Kodak images, -j 1: 4.95 -> 4.67 s); workers inherit it.
    - OpenVINO without its model converter (never used here; its import halves: 0.10 -> 0.05 s a process;
      ``onnx_backend.skip_model_converter``). bench/README.md, "Speed beside AVIF and JPEG XL"."""
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from neuralcodec.pipeline.onnx_backend import skip_model_converter

    skip_model_converter()


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (taskset, cpusets, batch schedulers) where the system
    reports one, else all of the machine's."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def native_cpu_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic in hardware (Linux: its cpuinfo flags): training's bf16 precision
    and the encoder's bfloat16 analysis both ask."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_backend(s) -> str:
    """The backend ``s`` (Encode- or DecodeSettings) runs on: its own, or for auto the ONNX Runtime where the
    work is float32 on a CPU without gradients and onnxruntime is installed, else torch. Decided without
    importing torch (a GPU is looked for where its driver shows one)."""
    if s.backend != "auto":
        return s.backend
    if s.precision == "fp16" or getattr(s, "effort", 0) or str(s.device).startswith("cuda"):
        return "torch"
    if s.device == "auto" and s.precision != "bf16" and _gpu_driver():
        return "torch"
    from neuralcodec.pipeline import onnx_backend

    return "onnx" if onnx_backend.available() else "torch"


def _gpu_driver() -> bool:
    import os

    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/dxg")
