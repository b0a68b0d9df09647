"""A second analysis for the top rates (the flagship's ``top_from``): the encoder picks an analysis by the rate, the
decoder is one for all rates, so files decode as before. Built from an encoder-only run's change
(bench/experiments/encoder_delta.py --top-from), exported, and run by both backends."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import neuralcodec
from neuralcodec.api import load_codec, read_container
from neuralcodec.cli.main import main
from neuralcodec.models import build
from neuralcodec.zoo import weights_io

from conftest import photo

ROOT = Path(__file__).resolve().parent.parent
MODEL = {"N": 8, "M": 8, "lmbda_min": 0.0015, "lmbda_max": 0.2, "t_min": -0.3}
TOP_FROM = 0.5


def _invoke(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """(tmp, base weights, encoder run, split run dir, split weights): a joint run exported as the base, an
    encoder-only run of the top rates from it, and the base with that run's change as its top analysis."""
    tmp = tmp_path_factory.mktemp("top")
    data = tmp / "data"
    data.mkdir()
    for i in range(2):
        Image.fromarray(photo(70, 80, i)).save(data / f"{i}.png")
    recipe = {"arch": "modhp", "model": MODEL, "data": str(data), "crop": 64, "batch": 2, "steps": 3, "warmup": 1,
              "threads": 1, "log_every": 1, "checkpoint_minutes": 100, "ema_decay": 0.5}
    (tmp / "joint.json").write_text(json.dumps(recipe))
    (tmp / "top.json").write_text(json.dumps({**recipe, "train_only": ["g_a.", "h_a.", "mod_a."], "high_t_share": 1.0,
                                              "lr": 1e-2, "seed": 3}))
    _invoke("train", "--recipe", tmp / "joint.json", "--run-dir", tmp / "trunk")
    base = tmp / "base.safetensors"
    _invoke("export", tmp / "trunk", "-o", base)
    _invoke("train", "--recipe", tmp / "top.json", "--run-dir", tmp / "enc", "--init-weights", base)
    subprocess.run([sys.executable, str(ROOT / "bench" / "experiments" / "encoder_delta.py"), tmp / "trunk",
                    tmp / "enc", "--base", base, "--top-from", str(TOP_FROM), "-o", tmp / "split"],
                   check=True, capture_output=True)
    weights = tmp / "split.safetensors"
    _invoke("export", tmp / "split", "-o", weights)
    return tmp, base, tmp / "enc", tmp / "split", weights


def test_the_top_analysis_serves_its_rates_alone_in_any_batch():
    torch.manual_seed(0)
    one = build("modhp", **MODEL).eval()
    torch.manual_seed(0)
    two = build("modhp", **MODEL, top_from=TOP_FROM).eval()
    assert all(torch.equal(v, two.state_dict()[k]) for k, v in one.state_dict().items())  # the same start
    assert [n for n, _ in two.named_parameters()][:len(list(one.parameters()))] == [n for n, _ in one.named_parameters()]
    two.init_top()
    x, t = torch.rand(4, 3, 64, 64), torch.tensor([0.1, 0.7, TOP_FROM, 0.3])
    with torch.no_grad():
        assert torch.equal(one.analysis(x, t), two.analysis(x, t))  # a copy of the analysis changes nothing
        for p in two.top.parameters():
            p.add_(0.05 * torch.randn_like(p))
        y, z = two.analysis(x, t), two.hyper_analysis(two.analysis(x, t), t)
        for i, top in enumerate((False, True, True, False)):  # t = top_from is the top's
            yi = two.analysis(x[i:i + 1], t[i:i + 1])
            torch.testing.assert_close(y[i:i + 1], yi)  # a mixed batch: each sample through its own analysis
            torch.testing.assert_close(z[i:i + 1], two.hyper_analysis(yi, t[i:i + 1]))
            assert torch.equal(yi, one.analysis(x[i:i + 1], t[i:i + 1])) != top
            assert torch.equal(two.band_view(int(top)).analysis(x[i:i + 1], t[i:i + 1]), yi)
        assert torch.equal(one.synthesis(y, t), two.synthesis(y, t))  # one decoder
    assert not hasattr(two.band_view(1), "top") and "top" in dict(two.named_children())
    assert two.config()["top_from"] == TOP_FROM and "top_from" not in one.config()
    with pytest.raises(ValueError, match="top_from"):
        build("modhp", **MODEL, top_from=-0.5)


def test_the_change_goes_to_the_top_analysis_alone(split):
    tmp, base, enc, out, _ = split
    load = lambda run: torch.load(run / "last.pt", map_location="cpu", weights_only=False)  # noqa: E731
    trunk, e, got = load(tmp / "trunk"), load(enc), load(out)
    start = weights_io.network_state(weights_io.load(base))
    names = [n for n, _ in build("modhp", **MODEL).named_parameters()]
    new = [n for n, _ in build("modhp", **MODEL, top_from=TOP_FROM).named_parameters()]
    assert json.loads((out / "recipe.json").read_text())["model"]["top_from"] == TOP_FROM
    assert len(got["ema"]) == len(new) and "opt" not in got and "t >= 0.5" in got["ema_desc"]
    moved = 0
    for i, name in enumerate(new):
        low = name.removeprefix("top.")
        j = names.index(low)
        if name.startswith("top.") and low.startswith(("g_a.", "h_a.", "mod_a.")):
            torch.testing.assert_close(got["ema"][i], trunk["ema"][j] + e["ema"][j] - start[low])
            moved += int(not torch.equal(got["ema"][i], trunk["ema"][j]))
        else:
            assert torch.equal(got["ema"][i], trunk["ema"][j]), name
    assert moved > 0
    script = [sys.executable, str(ROOT / "bench" / "experiments" / "encoder_delta.py")]
    p = subprocess.run([*script, str(out), str(enc), "--base", str(base), "--top-from", "1.5", "-o", str(tmp / "x")],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "already has a top analysis" in p.stderr and not (tmp / "x").exists()
    # onto the base itself: the base's weights with the encoder run's analysis as the top one
    subprocess.run([*script, "base", str(enc), "--base", str(base), "--top-from", str(TOP_FROM), "-o",
                    str(tmp / "on-base")], check=True, capture_output=True)
    on_base = load(tmp / "on-base")
    for i, name in enumerate(new):
        low = name.removeprefix("top.")
        want = e["ema"][names.index(low)] if name != low else start[name]
        torch.testing.assert_close(on_base["ema"][i].float(), want.float())
    assert json.loads((tmp / "on-base" / "recipe.json").read_text())["train_only"] == []
    # a change of the main analysis onto weights with a top one: the main one moves, the top one stays
    subprocess.run([*script, str(out), str(enc), "--base", str(base), "-o", str(tmp / "both")], check=True,
                   capture_output=True)
    both = load(tmp / "both")
    for i, name in enumerate(new):
        j = names.index(name.removeprefix("top."))
        if name.startswith(("g_a.", "h_a.", "mod_a.")):
            torch.testing.assert_close(both["ema"][i], got["ema"][i] + e["ema"][j] - start[name])
        else:
            assert torch.equal(both["ema"][i], got["ema"][i]), name


def test_files_below_and_above_the_split_decode_alike_on_both_backends(split):
    *_, weights = split
    img = photo(128, 128, 3)  # a multiple of the stride: the analysis' input is the image itself
    w = weights_io.load(str(weights))
    assert w.config["top_from"] == TOP_FROM and any(k.startswith("top.") for k in weights_io.network_state(w))
    torch_c = load_codec(str(weights), "cpu", "fp32", "torch")
    onnx_c = load_codec(str(weights), "cpu", "fp32", "onnx")
    assert onnx_c.backend == "onnx" and (onnx_c.transforms.directory / "analysis_top.onnx").is_file()
    base_like = weights_io.build_model(w).band_view(0)  # what the main analysis alone makes
    for q in (30, 80, 100):  # t = -0.3 + 1.3 q / 100: 0.09 (below), 0.74 and 1 (the top's)
        by = {b: neuralcodec.compress(img, q, weights=str(weights), backend=b) for b in ("torch", "onnx")}
        assert abs(len(by["onnx"]) - len(by["torch"])) <= max(4, len(by["torch"]) // 100)
        for data in by.values():
            c = read_container(data)
            a = [d.symbols for d in torch_c.decode_latents(c.header, c.chunks)]
            b = [d.symbols for d in onnx_c.decode_latents(c.header, c.chunks)]
            assert all(np.array_equal(u, v) for u, v in zip(a, b))
        t = torch_c.t(neuralcodec.rate.rate_of_quality(q))
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)[None], np.float32) / 255)
        with torch.no_grad():
            y_top = torch_c.model.analysis(x, torch.full((1,), t))
            y_main = base_like.analysis(x, torch.full((1,), t))
        assert torch.equal(y_top, y_main) == (t < TOP_FROM)
        y_onnx = onnx_c.transforms.analysis(img, t)  # the band's own graph
        assert np.abs(y_onnx - torch_c.transforms.analysis(img, t)).max() < 1e-3
        assert (np.abs(y_onnx - y_main.numpy()[0]).max() > 1e-2) == (t >= TOP_FROM)


def test_a_decoder_only_archive_drops_the_top_analysis_too(split):
    tmp, *_, weights = split
    archive = tmp / "decoder.safetensors"
    weights_io.write_archive(weights_io.load(str(weights)), archive)
    kept = weights_io.network_state(weights_io.load(str(archive)))
    assert kept and not any(k.startswith(("top.", "g_a.", "h_a.", "mod_a.")) for k in kept)
    data = neuralcodec.compress(photo(64, 64, 1), 90, weights=str(weights))
    assert np.asarray(neuralcodec.decompress(data, weights=str(archive))).shape == (64, 64, 3)


def test_training_goes_on_from_weights_with_a_top_analysis_and_refuses_a_model_without_one(split):
    tmp, _, _, _, weights = split
    recipe = json.loads((tmp / "joint.json").read_text())
    (tmp / "on.json").write_text(json.dumps({**recipe, "model": {**MODEL, "top_from": TOP_FROM}, "steps": 2}))
    _invoke("train", "--recipe", tmp / "on.json", "--run-dir", tmp / "on", "--init-weights", weights)
    r = CliRunner().invoke(main, ["train", "--recipe", str(tmp / "joint.json"), "--run-dir", str(tmp / "off"),
                                  "--init-weights", str(weights)])
    assert r.exit_code != 0 and "top_from" in r.output


def test_an_encoder_only_run_ships_its_base_prior_bit_for_bit_and_a_changed_prior_is_refused(split):
    """export --prior-from: the base's integer prior as it is (so files whose analysis did not change stay the
    same bytes), refused for a run whose prior network moved."""
    tmp, base, enc, _, _ = split
    out = tmp / "enc-prior.safetensors"
    _invoke("export", enc, "-o", out, "--prior-from", base)
    mine, theirs = weights_io.load(str(out)), weights_io.load(str(base))
    prior = [k for k in theirs.tensors if k.startswith(("int.", "int8."))]
    assert prior and all(np.array_equal(mine.tensors[k], theirs.tensors[k]) for k in prior)
    img = photo(64, 64, 2)
    assert neuralcodec.compress(img, 30, weights=str(out)) != neuralcodec.compress(img, 30, weights=str(base))  # moved y
    r = CliRunner().invoke(main, ["export", str(tmp / "trunk"), "-o", str(tmp / "x.safetensors"), "--prior-from",
                                  str(base)])  # the trunk's float prior is not the one the base loads as
    assert r.exit_code != 0 and "differs from base.safetensors" in r.output and not (tmp / "x.safetensors").exists()


def test_a_new_analysis_alone_decodes_its_base_files_and_replaces_it_in_the_catalog(split, tmp_path, monkeypatch):
    """export --prior-from records the base as ``same_decoder_as``: the new weights decode the base's files to the
    same pixels (so the base ships no archive), an archive of the new weights does too, and the catalog finds a
    file for the base's digest with no file of the base left; a fine-tune or another decoder is refused."""
    from neuralcodec.zoo import catalog

    tmp, base, enc, _, _ = split
    new = tmp_path / "flagship.safetensors"
    _invoke("export", enc, "-o", new, "--prior-from", base)
    b, w = weights_io.load(str(base)), weights_io.load(str(new))
    assert w.same_decoder_as == (b.digest,) and w.decodes is None and not w.decoder_only
    assert json.loads(new.with_suffix(".json").read_text())["same_decoder_as"] == [b.digest.hex()]
    img = photo(64, 64, 3)
    old_file = neuralcodec.compress(img, 20, weights=str(base))
    expected = np.asarray(neuralcodec.decompress(old_file, weights=str(base)))
    for backend in ("torch", "onnx"):
        assert np.array_equal(np.asarray(neuralcodec.decompress(old_file, weights=str(new), backend=backend)), expected)
    archive = tmp_path / "flagship-old.safetensors"
    weights_io.write_archive(w, archive)
    a = weights_io.load(str(archive))
    assert a.same_decoder_as == (b.digest,) and a.decodes_files_of() == (w.digest, b.digest)
    assert np.array_equal(np.asarray(neuralcodec.decompress(old_file, weights=str(archive))), expected)
    monkeypatch.setattr(catalog, "_weights_dir", lambda: tmp_path)
    assert catalog.shipped() == {w.digest: "flagship", b.digest: "flagship-old"}  # own digests first; then by name
    archive.unlink()
    assert catalog.shipped() == {w.digest: "flagship", b.digest: "flagship"}
    with pytest.raises(Exception, match="made with weights"):  # the base does not decode the new weights' files
        neuralcodec.decompress(neuralcodec.compress(img, 20, weights=str(new)), weights=str(base))
    weights_io.write_archive(b, tmp_path / "base-archive.safetensors")
    r = CliRunner().invoke(main, ["export", str(enc), "-o", str(tmp_path / "x.safetensors"), "--prior-from",
                                  str(tmp_path / "base-archive.safetensors")])
    assert r.exit_code != 0 and "archive or a decoder-only fine-tune" in r.output
