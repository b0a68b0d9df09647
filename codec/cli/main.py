"""The `neuralcodec` command: a thin layer over neuralcodec.api and neuralcodec.cli.batch.

Exit status: 0 all good, 1 some inputs failed (each reported, the rest converted), 2 usage error.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path

import click

from neuralcodec.format.bitstream import DEFAULT_MAX_PIXELS

EXAMPLES = """
\b
Examples:
  neuralcodec compress img.png -o img.nic -q 50
  neuralcodec decompress img.nic -o decoded.png  # without -o: img.png beside it, never over one
  neuralcodec compress photos/ -r -o out/ -j 2   # mirrored tree of .nic files
  neuralcodec decompress out/ -o restored/
  neuralcodec info img.nic --json
"""


@click.group(epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="neuralcodec")
def main():
    """neuralcodec: a learned image codec. On photos, files about half the size of JPEG's and a little smaller
    than WebP's at the same PSNR (Kodak BD-rates: README.md, "How well it compresses").

    Images go in as PNG, JPEG, WebP, TIFF, BMP or PPM; `.nic` files come out, and back.
    """


def entry() -> None:
    """The `neuralcodec` command as installed (console script, `python -m neuralcodec`): ``main()``, and after a
    compress or decompress call the process ends without tearing the interpreter down.

    Python's teardown frees every module, array and ONNX Runtime session one by one: 0.01-0.03 s of a decompress
    call, 0.06-0.08 s of a compress (kodim05, two runs of ``python bench/experiments/call_overheads.py``). By then a conversion has closed and renamed everything it
    wrote (``fileio.write_atomic``), the interpreter has joined its threads, and the exit handlers registered after
    this one (any library's, Ray's included) have run: exit handlers run last in, first out, and this one is
    registered first, so skipping the rest only skips freeing memory. Other commands (train, eval) keep the normal
    exit; so does a process where something registered an exit handler before this one (it would be skipped). A
    Ctrl-C during a conversion ends it with status 130, as before; one that escapes the command is left to Python."""
    if _atexit_handlers() == 0:
        atexit.register(_exit_now)
    try:
        main()
        _QUICK_EXIT["code"] = 0
    except SystemExit as e:
        _QUICK_EXIT["code"] = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        raise
    except KeyboardInterrupt:
        _QUICK_EXIT["armed"] = False
        raise


_QUICK_EXIT = {"armed": False, "code": 1}  # armed by a compress or decompress call (_convert); the command's status


def _atexit_handlers() -> int:
    count = getattr(atexit, "_ncallbacks", None)  # CPython's; elsewhere the fast exit is not taken
    return count() if count else 1


def _exit_now() -> None:
    if not _QUICK_EXIT["armed"]:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe: nothing more can reach it
            pass
    os._exit(_QUICK_EXIT["code"] & 0xFF)


EFFORT_HELP = ("Spend encode time for smaller files at the same quality; decoding is unchanged. 0: today's speed; "
               "1-4: 5/10/20/40 gradient steps on the latents against the decoder's own output; 5-9: stochastic "
               "Gumbel annealing, 40/60/100/160/250 steps (Yang et al. 2020). Measured (BD-rate vs effort 0, "
               "encode time; bench/effort.py, 2 Kodak crops, q 30 and 80): 1 -2.1 % x7, 2 -2.8 % x9, "
               "3 -3.6 % x16, 4 -4.5 % x28, 5 -5.2 % x40, 6 -6.3 % x62, 7 -7.9 % x101, 8 -9.2 % x159, "
               "9 -10.2 % x216. Models with a plain hyperprior (the flagship, lighthp, hvae); runs on torch.")


class Jobs(click.ParamType):
    """-j: a number of worker processes, or auto (batch.auto_workers decides)."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if str(value).strip() == "auto":
            return "auto"
        try:
            n = value if isinstance(value, int) else int(str(value).strip())
        except ValueError:
            n = 0
        if isinstance(n, bool) or not 1 <= n <= 64:
            self.fail(f"{value!r} is not auto or a whole number within 1..64", param, ctx)
        return n


def _common(f):
    opts = [
        click.option("-o", "--output", type=click.Path(),
                     help="Output file, or directory (for a directory input, or with a trailing /)."),
        click.option("-r", "--recursive", is_flag=True, help="Descend into subdirectories of a directory input."),
        click.option("-j", "--jobs", type=Jobs(), default="auto", show_default=True,
                     help="Worker processes for a directory, 1-64, or auto: one per core where the input has at "
                          "least 2 megapixels for each, fewer where memory is short, 1 on a GPU (24 Kodak images "
                          "on 2 cores: auto = 2, 0.85x the time of -j 1 to compress, 0.76x to decompress; "
                          "bench/speed.py). With --engine ray: at most this many files in flight; auto there: "
                          "twice the cluster's CPUs, or GPUs."),
        click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="Who runs a directory's files: local worker processes (-j), or a Ray cluster (every "
                          "node's cores or GPUs; inputs and outputs on a file system all nodes share; "
                          "pip install 'neuralcodec[ray]'; docs/scaling.md). Same outputs, same summary."),
        click.option("--address", default=None, metavar="ADDR",
                     help="With --engine ray: the cluster to use (HOST:PORT of its head, or auto for the one "
                          "this machine belongs to); default RAY_ADDRESS, else a cluster running on this machine, "
                          "else a Ray instance started for this run."),
        click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs."),
        click.option("--skip-existing", is_flag=True, help="Leave existing outputs alone (resume a batch)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="Where the transforms run; auto = cuda when present. A file made on either decodes on "
                          "either to the same latents."),
        click.option("--half", is_flag=True,
                     help="Run the transforms in float16 on a GPU (faster, PSNR within ~0.05 dB, see bench/README.md); "
                          "the coded latents stay exact. Ignored, with a note, on the CPU, where it is slower."),
        click.option("--backend", type=click.Choice(["auto", "onnx", "torch"]), default="auto", show_default=True,
                     help="What runs the transforms: onnx (ONNX Runtime, about twice torch's speed on a CPU; built "
                          "once per weights into ~/.cache/neuralcodec), torch (GPUs, --half, --effort), or auto "
                          "(onnx on a CPU, else torch). Every backend reads every file to the same latents."),
        click.option("--weights", default=None, metavar="NAME|PATH",
                     help="Shipped weights name or a .safetensors path. Default: compress uses the flagship; "
                          "decompress the shipped weights that made the file."),
        click.option("--quiet", is_flag=True, help="Print errors only."),
        click.option("-v", "--verbose", is_flag=True, help="One line per file."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@main.command(epilog=EXAMPLES)
@click.argument("input", type=click.Path(exists=True, allow_dash=True, path_type=Path))
@click.option("-q", "--quality", type=click.FloatRange(0, 100), default=50, show_default=True,
              help="0 (smallest) .. 100 (best); continuous. With the shipped weights about 0.07 bpp at 0 and "
                   "1.5 bpp at 100 on photos. "
                   "Fixed-rate models (all but the flagship) have one rate and ignore it.")
@click.option("--model", default=None, metavar="NAME",
              help="Code with the shipped weights of a model (modhp, lighthp, ...: docs/models.md) or a shipped "
                   "weights name (lighthp); default: the flagship. Superseded flagship weights ship decoder-only.")
@click.option("--tile", type=click.IntRange(128, 1024), default=None, metavar="PIXELS",
              help="Tile side of the transforms, 128..1024 (default 1024, less for a model with a wide halo): bigger "
                   "tiles run faster, smaller ones use less memory. Recorded in the file; the decoder follows it.")
@click.option("-e", "--effort", type=click.IntRange(0, 9), default=0, show_default=True, help=EFFORT_HELP)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="Arithmetic of the encoder's analysis on a CPU: bf16 runs it on OpenVINO in bfloat16 where the "
                   "CPU has it in hardware (AMX, AVX512-BF16; pip install 'neuralcodec[openvino]'): the analysis about "
                   "6x faster for +0.13 % of bits on Kodak (bench/README.md); auto = bf16 where it can run, else "
                   "fp32. Decoding always runs float32. (--half: float16 on a GPU.)")
@click.option("--refine", type=int, default=None, hidden=True)  # renamed: refused with a message naming --effort
@click.option("--strip", is_flag=True,
              help="Leave the image's metadata (ICC profile, EXIF, XMP) out of the file; by default it is carried "
                   "and written back on decoding where the output format can hold it.")
@click.option("--no-deblock", "no_deblock", is_flag=True,
              help="Do not ask decoders to smooth the 16-px latent grid on flat areas (skies, walls, gradients). "
                   "The filters (below quality 65 a ramp filter, then deblocking) cost no bytes (header flags) and "
                   "are measured in bench/README.md; this is for comparing the transforms' own pixels.")
@click.option("--target-size", metavar="BYTES", default=None,
              help="Search the quality whose file is at most this size and within 2 % of it: 50000, 100k, 1.5M, "
                   "64KiB. Per file for directories. Out of reach: the nearest file is written and the run fails.")
@click.option("--target-bpp", type=float, default=None, metavar="BPP",
              help="Search the quality whose file is within 2 % of this many bits per pixel.")
@click.option("--target-psnr", type=float, default=None, metavar="DB",
              help="Search the quality whose decoded image is within 0.1 dB of this PSNR (RGB, 8-bit).")
@_common
@click.pass_context
def compress(ctx, input, quality, model, tile, effort, precision, refine, strip, no_deblock, target_size, target_bpp,
             target_psnr, **kw):
    """Compress an image, or every image in a directory, to .nic files."""
    from neuralcodec.models import ARCHITECTURES
    from neuralcodec.zoo import catalog

    if model:
        if kw["weights"]:
            raise click.UsageError("--model and --weights exclude each other")
        name = catalog.for_model(model)
        if name is None:
            models = ", ".join(sorted(_shipped_models()))
            if model in ARCHITECTURES:
                raise click.UsageError(f"no weights ship for model {model!r} (models with weights: {models}); train "
                                       f"it with `neuralcodec train --arch {model}`, export it and pass --weights FILE")
            raise click.UsageError(f"unknown model {model!r}; models with shipped weights: {models} "
                                   f"(docs/models.md)")
        kw["weights"] = name
    if ctx.get_parameter_source("quality") is not click.core.ParameterSource.DEFAULT and not kw["quiet"]:
        arch = _arch_of(kw["weights"])
        from neuralcodec.models import VARIABLE_RATE

        if arch is not None and arch not in VARIABLE_RATE:
            click.echo(f"note: {arch} has one rate; -q is ignored (the flagship, modhp, is variable-rate)", err=True)
    if refine is not None:
        raise click.UsageError("--refine STEPS is now -e/--effort 0..9 (effort 3 is 20 steps; see --help)")
    if effort:
        if kw["weights"]:
            _check_weights(kw["weights"], "encode")
        _check_refinable(kw["weights"])
    if precision == "bf16" and kw["half"]:
        raise click.UsageError("--precision bf16 (the CPU analysis) and --half (float16 on a GPU) exclude each other")
    target = _target(target_size, target_bpp, target_psnr)
    _convert("compress", input, {"quality": quality, "tile": tile, "effort": effort, "target": target,
                                 "strip": strip, "deblock": not no_deblock, "precision": precision}, **kw)


def _target(size, bpp, psnr):
    """The one rate target the flags give, or None; a usage error for two, or for a malformed one."""
    from neuralcodec.ratecontrol import Target, parse_size

    given = [(k, v) for k, v in (("size", size), ("bpp", bpp), ("psnr", psnr)) if v is not None]
    if len(given) > 1:
        raise click.UsageError("--target-size, --target-bpp and --target-psnr exclude each other")
    if not given:
        return None
    kind, value = given[0]
    try:
        return Target(kind, parse_size(value) if kind == "size" else value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=f"--target-{kind}") from None


@main.command(epilog=EXAMPLES)
@click.argument("input", type=click.Path(exists=True, allow_dash=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["png", "webp", "tif", "bmp", "ppm"]), default="png",
              show_default=True, help="Output image format for directories, default names and standard output.")
@click.option("--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS, show_default=True,
              help="Refuse files whose image has more pixels than this.")
@click.option("--perceptual", is_flag=True,
              help="Decode with the GAN-fine-tuned decoder of the file's model where one ships: sharper texture, "
                   "lower PSNR; the same file.")
@click.option("--no-deblock", "no_deblock", is_flag=True,
              help="Leave out the filters the file asks for (ramp and deblocking): the synthesis' pixels as they are.")
@_common
def decompress(input, fmt, max_pixels, perceptual, no_deblock, **kw):
    """Decode a .nic file, or every .nic file in a directory, to images (PNG by default)."""
    if perceptual and kw["weights"]:
        raise click.UsageError("--perceptual picks the shipped perceptual decoder; give a perceptual weights file "
                               "with --weights instead")
    options = {"max_pixels": max_pixels, **({"perceptual": True} if perceptual else {}),
               **({"deblock": False} if no_deblock else {})}
    _convert("decompress", input, options, out_ext="." + fmt, fmt=fmt, **kw)


def _convert(direction, input, options, output, recursive, jobs, engine, address, force, skip_existing, device, half,
             backend, weights, quiet, verbose, out_ext=".png", fmt="png"):
    from neuralcodec.settings import command_line_process

    _QUICK_EXIT["armed"] = True
    command_line_process()  # BLAS threads, OpenVINO's import: before numpy and OpenVINO load (workers: batch)
    from neuralcodec.cli import batch

    stream = str(input) == "-" or output == "-"
    if address is not None and engine != "ray":
        raise click.UsageError("--address names a Ray cluster: add --engine ray")
    if engine == "ray":
        from neuralcodec.cli import ray_engine

        if not ray_engine.available():
            raise click.UsageError(f"--engine ray needs Ray, an optional extra: {ray_engine.INSTALL}")
        if stream:
            raise click.UsageError("--engine ray converts files and directories, not standard input or output")
    if stream and (recursive or (str(input) != "-" and input.is_dir())):
        raise click.UsageError("standard input and output carry one image: give a file, not a directory")
    if force and skip_existing:
        raise click.UsageError("--force and --skip-existing exclude each other")
    if input.is_dir() and output is not None and Path(output).is_file():
        raise click.UsageError(f"input is a directory but output {output} is a file")
    if weights:
        _check_weights(weights, "encode" if direction == "compress" else None)
    if (device == "cuda" or half) and engine != "ray":  # on a cluster the workers' GPUs count, not this machine's
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            raise click.UsageError("--device cuda: no CUDA device is available here (use --device auto or cpu)")
        if half and not (device != "cpu" and torch.cuda.is_available()):
            if not quiet:
                click.echo("note: --half is for GPUs; the transforms run in float32 on the CPU", err=True)
            half = False
    from neuralcodec.settings import DecodeSettings, EncodeSettings

    kind = EncodeSettings if direction == "compress" else DecodeSettings
    try:
        precision = options.pop("precision", "fp32")  # compress: --precision (auto by default)
        settings = kind(**options, device=device, weights=weights, precision="fp16" if half else precision,
                        backend=backend)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if not quiet:
        _note_first_build(settings)
    if stream:
        _stream(direction, input, output, settings, fmt, force, verbose)
        return
    plan = batch.plan(input, output, direction, recursive, out_ext)
    todo, skipped = [], 0
    results = list(plan.problems)
    for job in plan.jobs:
        if job.dst.resolve() == job.src.resolve():
            results.append(batch.Result(job, False, error="output would overwrite the input"))
        elif job.dst.exists() and not force:
            if skip_existing:
                skipped += 1
            else:
                results.append(batch.Result(job, False, error=f"{job.dst} exists (use -o to write elsewhere, "
                                                               "-f to overwrite, --skip-existing to keep it)"))
        else:
            todo.append(job)
    if not plan.jobs and not plan.problems:
        click.echo(f"no {'images' if direction == 'compress' else '.nic files'} found in {input}"
                   + ("" if recursive else " (use -r to descend into subdirectories)"), err=True)
        sys.exit(1)

    for r in results:
        _report(r, direction, quiet, verbose)
    show_bar = input.is_dir() and not quiet and not verbose and len(todo) > 1
    bar = _Bar()
    if show_bar:
        from tqdm import tqdm  # only for a bar: a one-image call does not pay its import

        bar = tqdm(total=len(todo), unit="file", file=sys.stderr)
    t0 = time.perf_counter()

    single = not input.is_dir()

    def on_result(r):
        bar.update(1)
        if not r.ok or verbose or (single and r.note):
            bar.clear()
            _report(r, direction, quiet, verbose, single)
            bar.refresh()

    try:
        if engine == "ray" and todo:  # nothing to do starts no cluster (ray_engine: imported above)
            try:
                in_flight = None if jobs == "auto" or jobs <= 1 else jobs
                results += ray_engine.run(todo, direction, settings, address, in_flight, on_result)
            except ray_engine.EngineError as e:
                bar.close()
                click.echo(f"error: {e}", err=True)
                sys.exit(1)
        else:
            workers = batch.auto_workers(todo, direction, settings) if jobs == "auto" else jobs
            results += batch.run(todo, direction, settings, workers, on_result)
    except KeyboardInterrupt:
        bar.close()
        click.echo("interrupted: outputs written so far are complete; rerun with --skip-existing to resume",
                   err=True)
        sys.exit(130)
    bar.close()
    done = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    if not quiet and (input.is_dir() or verbose):
        secs = time.perf_counter() - t0
        ins, outs = sum(r.in_bytes for r in done), sum(r.out_bytes for r in done)
        nic_bytes = outs if direction == "compress" else ins
        px = sum(r.pixels for r in done)
        bpp = f", {8 * nic_bytes / px:.3f} bpp" if px else ""
        click.echo(f"{len(done)} converted, {len(failed)} failed, {skipped} skipped; {ins:,} -> {outs:,} bytes"
                   f"{bpp}; {secs:.1f} s", err=True)
    sys.exit(1 if failed else 0)


def _note_first_build(settings) -> None:
    """Say so when this call builds the ONNX backend's graphs for the weights (once per weights, seconds)."""
    from neuralcodec.settings import DecodeSettings, resolve_backend

    if resolve_backend(settings) != "onnx" or (isinstance(settings, DecodeSettings) and settings.weights is None):
        return  # a decoder's weights are each file's own

    from neuralcodec.pipeline import onnx_backend
    from neuralcodec.zoo import catalog

    try:
        digest = bytes.fromhex((catalog.card(settings.weights) or {})["digest"])
    except (ValueError, KeyError, TypeError):
        return
    if not (onnx_backend.bundle_path(digest) / "spec.json").exists():
        click.echo("note: preparing the ONNX Runtime graphs of these weights (once; later calls start fast)", err=True)


def _stream(direction, input, output, settings, fmt, force, verbose) -> None:
    """One image through standard input and/or output (``-``); only the payload goes to stdout."""
    import io

    from neuralcodec import api
    from neuralcodec.cli.batch import with_hint
    from neuralcodec.format.fileio import write_atomic

    src_name = "<stdin>" if str(input) == "-" else str(input)
    to_stdout = output == "-" or (output is None and str(input) == "-")
    if to_stdout and sys.stdout.isatty():
        raise click.UsageError("refusing to write binary data to a terminal: redirect standard output or give -o FILE")
    dst = None if to_stdout else Path(output)
    if dst is not None and dst.exists() and not force:
        click.echo(f"error: {dst} exists (use -f to overwrite)", err=True)
        sys.exit(1)
    try:
        data = sys.stdin.buffer.read() if str(input) == "-" else input.read_bytes()
        if direction == "compress":
            out = api.compress(io.BytesIO(data), settings=settings)
        else:
            suffix = dst.suffix.lower().lstrip(".") if dst is not None and dst.suffix else fmt
            out = api.image_bytes(api.decompress(data, settings=settings), suffix)
        if to_stdout:
            sys.stdout.buffer.write(out)
            sys.stdout.buffer.flush()
        else:
            write_atomic(dst, out)
    except KeyboardInterrupt:
        click.echo("interrupted: nothing was written", err=True)
        sys.exit(130)
    except (ValueError, OSError, MemoryError, RuntimeError) as e:  # NeuralcodecErrors among them
        click.echo(f"error: {src_name}: {with_hint(e) if isinstance(e, (ValueError, OSError)) else f'{type(e).__name__}: {e}'}",
                   err=True)
        sys.exit(1)
    if verbose:
        click.echo(f"{src_name} -> {'<stdout>' if to_stdout else dst} ({len(out):,} bytes)", err=True)


class _Bar:
    """No progress bar: tqdm's calls, doing nothing."""

    def update(self, n=1):
        pass

    def clear(self):
        pass

    refresh = close = clear


def _check_weights(weights: str, action: str | None = None) -> None:
    """A usage error (exit 2) for a --weights/--init-weights that names nothing, or that names a decoder-only
    archive where they must ``action`` (e.g. "encode"), before any work starts."""
    from neuralcodec.zoo import catalog

    if not catalog.resolve(weights).is_file():
        raise click.UsageError(f"weights {weights!r} not found: give a .safetensors path or a shipped name "
                               f"({_shipped_names()})")
    if action and catalog.is_decoder_only(weights):
        raise click.UsageError(catalog.archive_refusal(repr(weights), action))


def _check_refinable(weights: str | None) -> None:
    """A usage error for --effort with a model that cannot refine its latents, before any work starts."""
    from neuralcodec.api import load_codec

    try:
        codec = load_codec(weights, "cpu")  # refinability is the model's structure: the CPU tells
    except Exception:  # noqa: BLE001 - unreadable weights are reported as usual, later
        return
    if not codec.refinable:
        raise click.UsageError(f"--effort: model {codec.model_id!r} does not support latent refinement "
                               "(the flagship does)")


def _arch_of(weights: str | None) -> str | None:
    """The architecture of a weights file from its card (no model loaded), or None."""
    from neuralcodec.zoo import catalog

    return (catalog.card(weights) or {}).get("arch")


def _shipped_models() -> set[str]:
    from neuralcodec.zoo import catalog

    return {a for a in (_arch_of(n) for n in set(catalog.shipped().values()) if not catalog.is_decoder_only(n)) if a}


def _shipped_names() -> str:
    from neuralcodec.zoo import catalog

    return ", ".join(sorted(set(catalog.shipped().values())))


def _report(r, direction, quiet, verbose, single=False):
    if not r.ok:
        click.echo(f"error: {r.job.src}: {r.error}", err=True)
    elif r.note and single and not quiet and not verbose:
        click.echo(f"{r.job.dst}: {r.out_bytes:,} bytes, {r.note}", err=True)
    elif verbose and not quiet:
        nic = r.out_bytes if direction == "compress" else r.in_bytes
        click.echo(f"{r.job.src} -> {r.job.dst}: {r.in_bytes:,} -> {r.out_bytes:,} bytes, "
                   f"{8 * nic / max(1, r.pixels):.3f} bpp, {r.seconds:.2f} s" + (f"; {r.note}" if r.note else ""),
                   err=True)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, one JSON object per file.")
def info(files, as_json):
    """Show the header of .nic files (no model is loaded)."""
    from neuralcodec.api import DecodeError, info as read_info
    from neuralcodec.cli.batch import with_hint

    status = 0
    for f in files:
        try:
            h = read_info(f.read_bytes())
        except (DecodeError, OSError) as e:
            click.echo(f"error: {f}: {with_hint(e)}", err=True)
            status = 1
            continue
        if as_json:
            click.echo(json.dumps({"file": str(f), **h}))
        else:
            click.echo(f"{f}: neuralcodec v{h['format_version']}, model {h['model']} "
                       f"(weights {h['weights_digest'][:16]}), quality {h['quality']:g}\n"
                       f"  {h['width']}x{h['height']} {h['mode']} ({h['channels']} ch, {h['bit_depth']}-bit)"
                       f"{', alpha' if h['alpha'] else ''}; y {tuple(h['y_shape'])}, z {tuple(h['z_shape'])}"
                       + (f"; tiles of {h['tile']} latents, halo {h['halo']}" if h["tile"] else "")
                       + ("; ramp-filtered" if h["ramp"] else "") + ("; deblocked" if h["deblock"] else "") + "\n"
                       f"  {h['bytes']:,} bytes, {h['bpp']:.4f} bpp; chunks "
                       + ", ".join(f"{k} {v:,}" for k, v in h["chunks"].items()))
    sys.exit(status)


@main.command()
@click.option("--arch", default=None, metavar="NAME",
              help="Model to train with its shipped recipe: modhp (the flagship, default), modhpc (the flagship with a "
                   "checkerboard context; start it with --init-weights flagship), resgdn, lighthp, "
                   "dcuvae, hvae, betavae, vqvae (docs/models.md).")
@click.option("--recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Training recipe JSON (default: the shipped recipe of --arch).")
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Where checkpoints and the log live (outside git; default runs/flagship, runs/ARCH for the "
                   "others). An existing checkpoint "
                   "is resumed.")
@click.option("--init-weights", default=None, metavar="NAME|PATH",
              help="Start from shipped weights when the run dir has no checkpoint (fresh optimizer).")
@click.option("--minutes", type=float, default=None, help="Stop (and checkpoint) after this many minutes.")
@click.option("--steps", type=int, default=None, help="Override the recipe's total steps.")
@click.option("--data", type=click.Path(exists=True, file_okay=False, resolve_path=True), default=None, metavar="DIR",
              help="Training images (JPEG/PNG) instead of the recipe's directory.")
def train(arch, recipe, run_dir, init_weights, minutes, steps, data):
    """Train (or resume training) a model; checkpoints every few minutes and on Ctrl-C/SIGTERM.

    \b
    neuralcodec train                                  # resume the flagship in runs/flagship
    neuralcodec train --arch lighthp --minutes 30      # a seed design, 30 minutes
    neuralcodec export runs/lighthp -o lighthp.safetensors
    neuralcodec compress img.png --weights lighthp.safetensors
    """
    from neuralcodec.train.loop import Recipe, TrainingError, default_recipe, train as run_training

    try:
        r = Recipe.load(recipe or default_recipe(arch or "modhp"))
    except FileNotFoundError:
        raise click.UsageError(f"no shipped recipe for --arch {arch!r}; give --recipe") from None
    if arch and r.arch != arch:
        raise click.UsageError(f"the recipe trains {r.arch!r}, not --arch {arch!r}")
    if steps:
        r.steps = steps
    if data:
        r.data = data
    if init_weights:
        _check_weights(init_weights, "initialize training")
    try:
        run_training(r, run_dir or Path("runs") / ("flagship" if r.arch == "modhp" else r.arch),
                     init_weights=init_weights, max_minutes=minutes, progress=sys.stderr.isatty())
    except TrainingError as e:
        raise click.ClickException(str(e)) from None


@main.command("eval")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--qualities", default="0,20,40,60,80,100", show_default=True, help="Comma-separated qualities.")
@click.option("--against", default="", metavar="jpeg,webp,avif,jxl",
              help="Classic codecs to run through Pillow beside ours; one Pillow cannot write here is skipped "
                   "with a note (jxl needs a Pillow plugin such as pillow-jxl-plugin).")
@click.option("--anchors", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Anchor RD curves (JSON, e.g. ../shared/data/anchors/kodak/*.json) for BD-rates; repeatable.")
@click.option("--weights", multiple=True, metavar="NAME|PATH",
              help="Weights to evaluate (default: flagship). Repeat it for one fixed-rate model trained at "
                   "several rates: each file is one point of its curve.")
@click.option("--limit", type=int, default=None, help="Only the first N images (quick looks).")
@click.option("-e", "--effort", type=click.IntRange(0, 9), default=0, show_default=True,
              help="Encode every file with compress --effort (slow; measures what the effort buys).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("report"),
              show_default=True, help="Directory for report.json, per-codec JSON and rd.png.")
def eval_cmd(dataset, qualities, against, anchors, weights, limit, effort, output):
    """Rate-distortion of real files on a directory of lossless images, with BD-rates and an RD plot."""
    from neuralcodec.evaluation.evaluate import AnchorError, EvaluationError, available_classic, check_codecs, evaluate

    try:
        qs = [float(q) for q in qualities.split(",") if q.strip()]
    except ValueError:
        raise click.BadParameter(f"{qualities!r} is not a comma-separated list of numbers",
                                 param_hint="--qualities") from None
    if not qs or not all(0 <= q <= 100 for q in qs):
        raise click.BadParameter("qualities run from 0 to 100", param_hint="--qualities")
    codecs = [c.strip().lower() for c in against.split(",") if c.strip()]
    try:
        check_codecs(codecs)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--against") from None
    for c in sorted(set(codecs) - set(available_classic())):
        click.echo(f"note: Pillow here cannot write {c}; skipped", err=True)
    for w in weights:
        _check_weights(w, "encode")
    if effort:
        _check_refinable(weights[0] if weights else None)
    try:  # evaluate() reads the anchors before minutes of coding, not after
        s = evaluate(dataset, output, qs, codecs, list(anchors), list(weights), limit, progress=sys.stderr.isatty(),
                     effort=effort)
    except AnchorError as e:
        raise click.BadParameter(str(e), param_hint="--anchors") from None
    except EvaluationError as e:
        raise click.ClickException(str(e)) from None
    r = s["curves"]["neuralcodec"]
    for i, q in enumerate(r["quality"]):
        q = f"{q:5.1f}" if isinstance(q, (int, float)) else q
        ms = f"  MS-SSIM {r['ms-ssim'][i]:.5f}" if "ms-ssim" in r else ""
        click.echo(f"q={q}  bpp {r['bpp'][i]:.4f}  PSNR {r['psnr-rgb'][i]:.3f}{ms}")
    for name, row in s["bd_rate"].items():
        click.echo(f"BD-rate vs {name}: " + ", ".join(f"{k} {v:+.2f} %" for k, v in row.items()))
    if "note" in s:
        click.echo(f"note: {s['note']}")
    click.echo(f"report in {output}/")


@main.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(), required=True,
              help="Destination .safetensors (a JSON card is written beside it).")
@click.option("--note", default="", help="Free text stored in the card.")
@click.option("--decodes", default=None, metavar="NAME|PATH",
              help="The run is a decoder-only fine-tune of these weights: the export decodes their files "
                   "(`decompress --perceptual`); refused if anything but the synthesis changed.")
@click.option("--raw", is_flag=True,
              help="Export the last step's weights instead of their moving average (which is what ships): "
                   "for comparing the two.")
@click.option("--prior-bits", type=click.Choice(["16", "8"]), default="16", show_default=True,
              help="Arithmetic of the shipped prior network: 16-bit weights in exact float64, or 8-bit weights "
                   "and 7-bit activations in exact int32 (about 4x faster to evaluate, the same bits on Kodak: "
                   "docs/bitstream.md). 8 fits one step per layer on training images (--calibration).")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Images to fit the 8-bit prior's steps on (default: the recipe's training data).")
@click.option("--prior-from", default=None, metavar="NAME|PATH",
              help="Ship these weights' integer prior bit for bit instead of making one (refused unless all but "
                   "the run's analysis is theirs: an encoder-only run): files of every rate whose analysis did not "
                   "change stay the same but for the digest they name, and the new weights decode those weights' "
                   "files too (same_decoder_as).")
def export_weights(run_dir, output, note, decodes, raw, prior_bits, calibration, prior_from):
    """Export a training run's checkpoint as shipped fp16 safetensors weights with their card."""
    from neuralcodec.train.calibrate import CalibrationError
    from neuralcodec.train.loop import export_run
    from neuralcodec.zoo.weights_io import WeightsError

    missing = [f for f in ("recipe.json", "last.pt") if not (run_dir / f).is_file()]
    if missing:
        raise click.UsageError(f"{run_dir} is not a training run directory (no {' or '.join(missing)})")
    if decodes:
        _check_weights(decodes, "be fine-tuned")
    try:
        d = export_run(run_dir, output, note, decodes=decodes, raw=raw, prior_bits=int(prior_bits),
                       calibration=calibration, prior_from=prior_from)
    except (WeightsError, CalibrationError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"wrote {output} (digest {d.hex()[:16]})")


@main.command("retire")
@click.argument("weights", metavar="NAME|PATH")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Destination .safetensors (may be WEIGHTS itself; its card is rewritten beside it).")
@click.option("-f", "--force", is_flag=True, help="Overwrite another existing output.")
def retire(weights, output, force):
    """Keep superseded weights as a decoder-only archive, about a third smaller.

    The archive drops the analysis transforms: every file made with WEIGHTS still decodes, bit for bit, and
    nothing new can be encoded with it. For maintainers shipping new weights (weights/README.md)."""
    import json

    from neuralcodec.zoo import catalog, weights_io

    _check_weights(weights)
    src_path = catalog.resolve(weights).resolve()
    if output.suffix != ".safetensors":
        raise click.UsageError(f"-o {output}: the archive is a .safetensors file")
    if output.resolve() == catalog.resolve(None).resolve():
        raise click.UsageError(f"-o {output} is the default weights: nothing could encode any more; move the "
                               "superseded weights to a dated name first (weights/README.md)")
    if output.exists() and output.resolve() != src_path and not force:
        raise click.UsageError(f"{output} exists (use -f to overwrite it)")
    try:
        src = weights_io.load(src_path)
        card_path = src_path.with_suffix(".json")
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        d = weights_io.write_archive(src, output, card)
    except (weights_io.WeightsError, ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"wrote {output} ({output.stat().st_size:,} bytes, digest {d.hex()[:16]}); it decodes the files of "
               f"{src.digest.hex()[:16]}")

if __name__ == "__main__":
    main()
