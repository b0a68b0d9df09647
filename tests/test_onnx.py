"""The ONNX Runtime backend: the CPU default. Same latents as torch for every file, pixels within 1, no torch in
a decoding process, bundles built once and refused when broken."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from click.testing import CliRunner

import neuralcodec
from neuralcodec.api import load_codec, read_container
from neuralcodec.pipeline import onnx_backend
from neuralcodec.pipeline.spec import ModelSpec
from neuralcodec.zoo import catalog, weights_io

from conftest import photo


def _latents(codec, data):
    c = read_container(data)
    return [d.symbols for d in codec.decode_latents(c.header, c.chunks)]


def test_files_of_either_backend_decode_to_the_same_latents_on_both():
    img = photo(96, 128, 3)
    torch_c, onnx_c = load_codec(None, "cpu", "fp32", "torch"), load_codec(None, "cpu", "fp32", "onnx")
    assert onnx_c.backend == "onnx" and torch_c.backend == "torch"
    for q in (0, 60, 100):
        by_torch = neuralcodec.compress(img, q, backend="torch")
        by_onnx = neuralcodec.compress(img, q, backend="onnx")
        assert abs(len(by_onnx) - len(by_torch)) <= max(4, len(by_torch) // 100)  # the same y up to float order
        for data in (by_torch, by_onnx):
            assert all(np.array_equal(a, b) for a, b in zip(_latents(torch_c, data), _latents(onnx_c, data)))
            a = np.asarray(neuralcodec.decompress(data, backend="torch", deblock=False), np.int16)
            b = np.asarray(neuralcodec.decompress(data, backend="onnx", deblock=False), np.int16)
            assert np.abs(a - b).max() <= 1  # the synthesis' pixels
            # the deblocking filter may decide a line differently on a 1-level difference: rare
            a = np.asarray(neuralcodec.decompress(data, backend="torch"), np.int16)
            b = np.asarray(neuralcodec.decompress(data, backend="onnx"), np.int16)
            assert np.mean(np.abs(a - b) > 1) < 0.01


def test_the_default_on_a_cpu_is_onnx_and_decodes_every_golden_file():
    """Every golden file (every shipped weights: flagship, decoder-only archives, seed models) decodes on ONNX
    Runtime to the torch backend's latents, pixels within 1."""
    from neuralcodec.settings import resolve_backend
    from test_determinism import GOLDEN

    assert resolve_backend(neuralcodec.DecodeSettings()) == "onnx"
    files = sorted(GOLDEN.glob("*.nic"))
    assert len(files) >= 8
    for f in files:
        data = f.read_bytes()
        name = catalog.shipped()[read_container(data).header.weights_digest]
        torch_c, onnx_c = load_codec(name, "cpu", "fp32", "torch"), load_codec(name, "cpu", "fp32", "onnx")
        assert all(np.array_equal(a, b) for a, b in zip(_latents(torch_c, data), _latents(onnx_c, data))), f.name
        raw = [np.asarray(neuralcodec.decompress(data, backend=b, deblock=False), np.int16) for b in ("torch", "onnx")]
        assert np.abs(raw[0] - raw[1]).max() <= 1, f.name  # the synthesis: float summation order
        if np.array_equal(*raw):  # the filters are integer arithmetic: the same input, the same pixels (else a
            assert np.array_equal(*(np.asarray(neuralcodec.decompress(data, backend=b)) for b in ("torch", "onnx")))
            # 1-level difference may tip a filter's decision on a line, docs/bitstream.md)


def test_a_decode_imports_no_torch(tmp_path):
    """What makes one CLI call fast: numpy, constriction and onnxruntime only (the bundle already built)."""
    data = neuralcodec.compress(photo(64, 80, 1), 50, backend="onnx")
    (tmp_path / "a.nic").write_bytes(data)
    code = ("import sys, neuralcodec; img = neuralcodec.decompress(open(sys.argv[1], 'rb').read()); "
            "print(img.size, 'torch' in sys.modules, 'compressai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.nic")], capture_output=True, text=True,
                         env=os.environ, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(80,", "64)", "False", "False"]
    for cmd in (["decompress", str(tmp_path / "a.nic"), "-o", str(tmp_path / "a.png")],
                ["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.nic")]):  # the command line too
        code = ("import sys; from neuralcodec.cli.main import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
                "    assert not e.code, e.code\nprint('torch' in sys.modules, 'compressai' in sys.modules, "
                "'importlib.metadata' in sys.modules)")  # the last: 0.045 s of a call (it imports email)
        out = subprocess.run([sys.executable, "-c", code, *cmd, "--quiet"], capture_output=True, text=True,
                             env=os.environ, timeout=120)
        assert out.returncode == 0 and out.stdout.split() == ["False", "False", "False"], (cmd, out.stderr)


def test_the_installed_command_ends_without_teardown_and_loses_nothing(tmp_path):
    """`python -m neuralcodec` (the console script's entry) skips the interpreter's teardown after a conversion
    (cli.main.entry): every output whole, every exit status kept, standard output flushed."""
    data = neuralcodec.compress(photo(48, 64, 2), 50, backend="onnx")
    (tmp_path / "a.nic").write_bytes(data)
    (tmp_path / "junk.nic").write_bytes(b"junk")
    want = np.asarray(neuralcodec.decompress(data))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "neuralcodec", *map(str, args)], capture_output=True,
                              env=os.environ, timeout=120)

    ok = cli("decompress", tmp_path / "a.nic", "-o", tmp_path / "a.png", "--quiet")
    assert ok.returncode == 0, ok.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), want)
    piped = cli("decompress", tmp_path / "a.nic", "-o", "-")
    assert piped.returncode == 0 and np.array_equal(np.asarray(Image.open(io.BytesIO(piped.stdout))), want)
    bad = cli("decompress", tmp_path / "junk.nic", "-o", tmp_path / "junk.png")
    assert bad.returncode == 1 and b"not a .nic file" in bad.stderr and not (tmp_path / "junk.png").exists()
    assert cli("decompress", tmp_path / "missing.nic").returncode == 2  # a usage error
    info = cli("info", tmp_path / "a.nic", "--json")  # not a conversion: the normal exit
    assert info.returncode == 0 and json.loads(info.stdout)["width"] == 64
    code = "import atexit, neuralcodec.cli.main; print(atexit._ncallbacks())"  # what entry finds: no handler
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=60)
    assert out.stdout.split() == ["0"], out.stderr  # before its own (else the fast exit is silently off)


def test_the_flagship_synthesis_leaves_its_last_big_shuffle_out():
    """layers.late_shuffles on the shipped flagship: its last two size-doublings end in one shuffle by 4 (the
    128-channel interleave at half the image's resolution never happens)."""
    import onnx

    graph = onnx.load(str(onnx_backend.build(weights_io.load(None)) / "synthesis.onnx")).graph
    blocks = sorted(onnx.helper.get_attribute_value(a) for n in graph.node if n.op_type == "DepthToSpace"
                    for a in n.attribute if a.name == "blocksize")
    assert blocks == [2, 2, 4]


def test_a_late_shuffle_that_disagrees_with_torch_falls_back_to_the_plain_synthesis(tmp_path, monkeypatch):
    """A late-shuffle synthesis that traces but computes otherwise (here: its last layer's bias moved) fails the
    build's check against torch; the bundle is then built with the plain synthesis, not refused."""
    import onnx

    from neuralcodec.models import layers

    real = layers.late_shuffles

    def broken(module):
        real(module)
        for m in module.modules():
            if isinstance(m, layers.SubPixelConv) and m.phase_input is not None:
                m.phase_input_params[1].data += 0.5
        return module

    monkeypatch.setattr(layers, "late_shuffles", broken)
    target = onnx_backend.build(weights_io.load(None), tmp_path / "bundle")
    graph = onnx.load(str(target / "synthesis.onnx")).graph
    assert [n.op_type for n in graph.node].count("DepthToSpace") == 4  # a shuffle by 2 after each layer


def test_a_spec_round_trips_through_json_for_every_shipped_weights():
    for name in sorted(set(catalog.shipped().values())):
        w = weights_io.load(name)
        spec = ModelSpec.of(weights_io.build_model(w), w.arch)
        assert ModelSpec.from_json(spec.to_json()) == spec, name


def test_a_broken_bundle_says_how_to_rebuild_and_auto_falls_back_to_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURALCODEC_CACHE_DIR", str(tmp_path))
    w = weights_io.load(None)
    target = onnx_backend.bundle_path(w.digest)
    target.mkdir(parents=True)
    (target / "spec.json").write_text("{not json")
    with pytest.raises(onnx_backend.BackendError, match="delete it to rebuild"):
        onnx_backend.load(w)
    target.rename(tmp_path / "moved")
    onnx_backend._failed(target).write_text("cannot export modhp to ONNX: a test")
    from neuralcodec import api

    api._load_codec.cache_clear()
    try:
        with pytest.raises(onnx_backend.BackendError, match="a test"):
            neuralcodec.decompress(neuralcodec.compress(photo(32, 32), 50, backend="torch"), backend="onnx")
        assert load_codec(None, "cpu", "fp32", "auto").backend == "torch"  # auto: this model stays on torch
    finally:
        api._load_codec.cache_clear()


def test_backend_choices_are_checked_before_any_work(tmp_path):
    from neuralcodec.cli.main import main

    with pytest.raises(ValueError, match="gradients"):
        neuralcodec.EncodeSettings(effort=4, backend="onnx")
    with pytest.raises(ValueError, match="backend"):
        neuralcodec.DecodeSettings(backend="tensorrt")
    img = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(photo(32, 32)).save(img)
    r = CliRunner().invoke(main, ["compress", str(img), "--backend", "onnx", "--half", "--device", "cuda"])
    assert r.exit_code == 2 and not (tmp_path / "a.nic").exists()
    r = CliRunner().invoke(main, ["compress", str(img), "--backend", "torch", "-o", str(tmp_path / "t.nic")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["decompress", str(tmp_path / "t.nic"), "--backend", "onnx", "-o",
                                  str(tmp_path / "t.png")])
    assert r.exit_code == 0 and (tmp_path / "t.png").exists(), r.output


def test_threads_follow_the_workers_share(monkeypatch):
    monkeypatch.setenv("NEURALCODEC_THREADS", "1")
    assert onnx_backend.threads() == 1
    monkeypatch.setenv("NEURALCODEC_THREADS", "x")
    assert onnx_backend.threads() >= 1


def test_an_unwritable_cache_leaves_the_default_on_torch(tmp_path, monkeypatch):
    """Where ~/.cache cannot be written (a container, a service), auto decodes on torch instead of failing."""
    from neuralcodec import api

    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("NEURALCODEC_CACHE_DIR", str(blocker / "cache"))
    api._load_codec.cache_clear()
    try:
        data = neuralcodec.compress(photo(32, 40, 7), 50)
        assert np.asarray(neuralcodec.decompress(data)).shape == (32, 40, 3)
        assert load_codec(None, "cpu", "fp32", "auto").backend == "torch"
        with pytest.raises(onnx_backend.BackendError, match="cannot write the ONNX cache"):
            neuralcodec.decompress(data, backend="onnx")
    finally:
        api._load_codec.cache_clear()


def test_sessions_stop_spinning_after_a_run():
    """ONNX Runtime's workers stop spinning when a run ends: the numpy work that follows an analysis needs both
    cores (bench/experiments/ort_spinning.py)."""
    codec = load_codec(None, "cpu", "fp32", "onnx")
    session, _ = codec.transforms._session("synthesis")
    assert session.get_session_options().get_session_config_entry("session.force_spinning_stop") == "1"


def test_the_memory_policy_picks_sessions_by_tiles_and_changes_nothing(monkeypatch):
    """A process's first analysis of one tile runs without ONNX Runtime's arena, of several with it, and above
    SHRINK_PIXELS every analysis run shrinks it (memory back between tiles); a synthesis always keeps it, never
    shrunk; from a process's second image on, every analysis keeps the arena: the same bytes and pixels."""
    from neuralcodec import api

    api._load_codec.cache_clear()  # a fresh codec: its first image
    load_codec(None, "cpu", "fp32", "onnx")  # the bundle built (its check runs the graphs) before runs are counted
    img = photo(96, 160, 3)
    runs = []
    real = onnx_backend.OrtTransforms._run
    monkeypatch.setattr(onnx_backend.OrtTransforms, "_run",
                        lambda self, *a: runs.append((a[0], self._arena, self._shrink)) or real(self, *a))
    data = neuralcodec.compress(img, 50, backend="onnx", precision="fp32", tile=1024)  # one tile
    pixels = np.asarray(neuralcodec.decompress(data, backend="onnx", deblock=False))
    assert {r for r in runs if r[0] != "upper"} == {("analysis", False, False), ("synthesis", True, False)}
    runs.clear()
    tiled = neuralcodec.compress(img, 50, backend="onnx", precision="fp32", tile=128)  # 128 px tiles: several
    assert abs(len(tiled) - len(data)) <= max(4, len(data) // 50)
    assert ("analysis", True, False) in runs
    monkeypatch.setattr(onnx_backend, "SHRINK_PIXELS", 0)
    runs.clear()
    assert neuralcodec.compress(img, 50, backend="onnx", precision="fp32", tile=128) == tiled
    assert ("analysis", True, True) in runs and ("upper", False, False) in runs
    assert np.array_equal(np.asarray(neuralcodec.decompress(data, backend="onnx", deblock=False)), pixels)
    assert ("synthesis", True, False) in runs and ("synthesis", True, True) not in runs
    monkeypatch.setattr(onnx_backend, "SHRINK_PIXELS", 1 << 24)
    from neuralcodec.ratecontrol import Target

    api._load_codec.cache_clear()  # a fresh codec again: one image, a target search's many tries: no arena
    load_codec(None, "cpu", "fp32", "onnx")
    runs.clear()
    api.compress_to_target(img, neuralcodec.EncodeSettings(backend="onnx", precision="fp32", tile=1024,
                                                           target=Target("bpp", 1.0)))
    tries = [r for r in runs if r[0].startswith("analysis")]  # the flagship's top analysis serves t >= 0.5
    assert len(tries) > 1 and not any(arena for _, arena, _ in tries)
    runs.clear()
    assert neuralcodec.compress(img, 50, backend="onnx", precision="fp32", tile=1024) == data  # a second image: arena
    assert [r for r in runs if r[0] == "analysis"] == [("analysis", True, False)]


bf16_here = pytest.mark.skipif(not onnx_backend.bf16_analysis_available(),
                               reason="OpenVINO and a CPU with bfloat16 arithmetic are needed")


@bf16_here
def test_a_bf16_analysis_writes_nearly_the_same_files_that_decode_alike():
    img = photo(96, 128, 5)
    for q in (0, 60, 100):
        exact = neuralcodec.compress(img, q, precision="fp32")
        fast = neuralcodec.compress(img, q, precision="bf16")
        assert abs(len(fast) - len(exact)) <= max(8, len(exact) // 50)
        a = np.asarray(neuralcodec.decompress(exact), np.float64)
        b = np.asarray(neuralcodec.decompress(fast), np.float64)
        # dB; a tiny image has few latents, so one moved value shows (Kodak: bench/README.md, +0.13 % of bits)
        assert abs(10 * np.log10(np.mean((a - img) ** 2) / np.mean((b - img) ** 2))) < 0.5
    codec = load_codec(None, "cpu", "bf16", "onnx")
    assert codec.transforms.analysis_precision == "bf16"
    y16 = codec.transforms.analysis(img, 0.5)
    y32 = load_codec(None, "cpu", "fp32", "onnx").transforms.analysis(img, 0.5)
    assert np.mean(np.round(y16) != np.round(y32)) < 0.01 and not np.array_equal(y16, y32)


@bf16_here
def test_a_failed_compile_into_the_cache_compiles_without_it(monkeypatch):
    """Two processes filling the same OpenVINO cache entry at once (a -j run's first files) made one fail; it now
    compiles without the cache. Its threads are not pinned: two one-thread workers were both pinned to core 0."""
    codec = load_codec(None, "cpu", "bf16", "onnx")
    transforms = codec.transforms
    img = photo(48, 64, 2)
    before = transforms.analysis(img, 0.25)  # the main analysis (the flagship's top one serves t >= 0.5)
    compile_bf16, tries = type(transforms)._compile_bf16, []

    def lost_race(self, name, cache):
        tries.append(cache)
        if cache:
            raise RuntimeError("filesystem error: cannot set permissions: No such file or directory")
        return compile_bf16(self, name, cache)

    monkeypatch.setattr(type(transforms), "_compile_bf16", lost_race)
    monkeypatch.setattr(transforms, "_openvino", {})
    assert np.array_equal(transforms.analysis(img, 0.25), before) and tries == [True, False]
    assert transforms._openvino["analysis"].get_property("ENABLE_CPU_PINNING") is False


@bf16_here
def test_the_command_line_imports_openvino_without_its_model_converter(tmp_path):
    """OpenVINO's import loads its model converter (half the import's time) unless that import fails; the CLI's
    process never converts models, so it skips it, and the bfloat16 analysis still runs."""
    Image.fromarray(photo(64, 80, 3)).save(tmp_path / "a.png")
    code = ("import sys; from neuralcodec.cli.main import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print('openvino' in sys.modules, sys.modules.get('openvino.tools.ovc', 0) is None, "
            "any(k.startswith('openvino.tools.ovc.') for k in sys.modules))")
    cmd = ["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.nic"), "--precision", "bf16", "--quiet"]
    out = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, env=os.environ,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["True", "True", "False"], out.stderr
    assert np.asarray(neuralcodec.decompress((tmp_path / "a.nic").read_bytes())).shape == (64, 80, 3)


def test_precision_choices_are_checked(monkeypatch):
    from neuralcodec import api
    from neuralcodec.settings import EncodeSettings

    for bad in ({"backend": "torch"}, {"effort": 2}, {"device": "cuda"}):
        with pytest.raises(ValueError, match="bf16"):
            EncodeSettings(precision="bf16", **bad)
    assert EncodeSettings().precision == "auto"
    from neuralcodec.cli.main import main

    res = CliRunner().invoke(main, ["compress", __file__, "--precision", "bf16", "--half"])
    assert res.exit_code == 2 and "exclude each other" in res.output
    monkeypatch.setattr(onnx_backend, "bf16_analysis_available", lambda: False)
    api._load_codec.cache_clear()
    try:
        with pytest.raises(onnx_backend.BackendError, match="OpenVINO"):
            neuralcodec.compress(photo(32, 32), 50, precision="bf16")
        assert load_codec(None, "cpu", "auto", "onnx").transforms.analysis_precision == "fp32"
    finally:
        api._load_codec.cache_clear()
