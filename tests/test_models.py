"""Every registered model trains, exports and codes real files through the same format (issue 7)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import neuralcodec
from neuralcodec.cli import main as cli
from neuralcodec.api import load_codec
from neuralcodec.evaluation.evaluate import available_classic
from neuralcodec.train.loop import Recipe, export_run, train

from conftest import photo

TINY = {
    "resgdn": {"N": 8, "M": 12, "lmbda": 0.013},
    "lighthp": {"N": 8, "M": 12, "lmbda": 0.013},
    "dcuvae": {"N": 8, "M": 12, "M1": 8, "M2": 6, "lmbda": 0.013},
    "hvae": {"N": 8, "M": 12, "M1": 8, "M2": 6, "lmbda": 0.013},
    "betavae": {"N": 8, "M": 12, "beta": 1e-3},
    "vqvae": {"N": 8, "D": 6, "groups": 2, "codes": 16, "lmbda": 0.013},
}
GAN = {"hvae", "betavae", "vqvae"}  # trained here with the adversarial stage on


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    for i in range(2):
        Image.fromarray(photo(70, 80, i)).save(d / f"{i}.png")
    return d


@pytest.fixture(scope="module", params=sorted(TINY))
def tiny_weights(request, data, tmp_path_factory):
    """Weights of a tiny model of each seed architecture, after two training steps."""
    arch = request.param
    tmp = tmp_path_factory.mktemp(arch)
    recipe = Recipe(arch=arch, model=TINY[arch], data=str(data), crop=64, batch=2, steps=2, warmup=1, threads=1,
                    log_every=1, checkpoint_minutes=100, gan_weight=0.1 if arch in GAN else 0.0)
    train(recipe, tmp / "run", progress=False)
    w = tmp / f"{arch}.safetensors"
    export_run(tmp / "run", w, "test")
    return arch, w


def test_shipped_recipes_name_their_architecture():
    for arch in ("modhp", *TINY):
        from neuralcodec.train.loop import default_recipe

        assert Recipe.load(default_recipe(arch)).arch == arch


def test_round_trip_equals_the_models_own_output(tiny_weights):
    arch, w = tiny_weights
    img = photo(45, 70, 3)
    data = neuralcodec.compress(img, 50, weights=str(w))
    info = neuralcodec.info(data)
    assert info["model"] == arch and info["width"] == 70 and info["height"] == 45
    out = np.asarray(neuralcodec.decompress(data, weights=str(w), deblock=False))  # the synthesis' own pixels
    codec = load_codec(str(w), "cpu")
    assert np.abs(out.astype(int) - codec.reconstruct(img, 0).astype(int)).max() <= 1
    levels = codec.decode_latents(neuralcodec.api.read_container(data).header, neuralcodec.api.read_container(data).chunks)
    assert [d.symbols.shape for d in levels] == codec.latent_shapes(45, 70)


def test_fixed_rate_models_ignore_the_quality(tiny_weights):
    _, w = tiny_weights
    img = photo(40, 40, 5)
    assert neuralcodec.compress(img, 10, weights=str(w)) == neuralcodec.compress(img, 90, weights=str(w))


def test_a_file_of_one_model_is_refused_by_another(tiny_weights):
    _, w = tiny_weights
    data = neuralcodec.compress(photo(40, 40, 6), 50)  # the flagship
    with pytest.raises(neuralcodec.api.DecodeError, match="model"):
        neuralcodec.decompress(data, weights=str(w))


def test_cli_round_trip_with_a_seed_model(tiny_weights, tmp_path):
    _, w = tiny_weights
    Image.fromarray(photo(48, 64, 7)).save(tmp_path / "a.png")
    r = CliRunner().invoke(cli.main, ["compress", str(tmp_path / "a.png"), "--weights", str(w), "--quiet"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli.main, ["decompress", str(tmp_path / "a.nic"), "--weights", str(w), "-o",
                                      str(tmp_path / "b.png"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "b.png").size == (64, 48)


def test_refinement_where_the_model_supports_it(tiny_weights, tmp_path):
    arch, w = tiny_weights
    img = photo(40, 48, 9)
    Image.fromarray(img).save(tmp_path / "a.png")
    r = CliRunner().invoke(cli.main, ["compress", str(tmp_path / "a.png"), "--weights", str(w), "--effort", "1"])
    if load_codec(str(w)).refinable:  # a hyperprior whose bottom level the synthesis reads alone
        assert r.exit_code == 0, r.output
        data = (tmp_path / "a.nic").read_bytes()
        assert np.asarray(neuralcodec.decompress(data, weights=str(w))).shape == img.shape
    else:
        assert r.exit_code == 2 and "does not support latent refinement" in r.output and not (tmp_path / "a.nic").exists()
        with pytest.raises(ValueError, match="refinement"):
            neuralcodec.compress(img, 50, weights=str(w), effort=1)


def test_train_command_knows_the_seed_architectures(tmp_path):
    r = CliRunner().invoke(cli.main, ["train", "--arch", "nosuch", "--run-dir", str(tmp_path)])
    assert r.exit_code == 2 and "no shipped recipe" in r.output


def test_perceptual_decoder_fine_tune_decodes_the_same_files(data, tmp_path):
    """A decoder-only GAN fine-tune exports as weights that decode the base weights' files: same latents."""
    base_run, tuned_run = tmp_path / "base", tmp_path / "tuned"
    r = Recipe(arch="lighthp", model=TINY["lighthp"], data=str(data), crop=64, batch=2, steps=2, warmup=1,
               threads=1, log_every=1, checkpoint_minutes=100)
    train(r, base_run, progress=False)
    base = tmp_path / "base.safetensors"
    export_run(base_run, base)
    r.gan_weight, r.train_only, r.lr = 0.1, ["g_s."], 1e-2
    train(r, tuned_run, init_weights=str(base), progress=False)
    tuned = tmp_path / "tuned.safetensors"
    res = CliRunner().invoke(cli.main, ["export", str(tuned_run), "-o", str(tuned), "--decodes", str(base)])
    assert res.exit_code == 0, res.output  # the command line's export --decodes
    assert json.loads(tuned.with_suffix(".json").read_text())["decodes"] == neuralcodec.info(
        neuralcodec.compress(photo(40, 40, 1), 50, weights=str(base)))["weights_digest"]

    data_nic = neuralcodec.compress(photo(48, 64, 8), 50, weights=str(base))
    c = neuralcodec.api.read_container(data_nic)
    a = load_codec(str(base), "cpu").decode_latents(c.header, c.chunks)
    b = load_codec(str(tuned), "cpu").decode_latents(c.header, c.chunks)
    assert all(np.array_equal(x.symbols, y.symbols) for x, y in zip(a, b))
    plain = np.asarray(neuralcodec.decompress(data_nic, weights=str(base)))
    sharp = np.asarray(neuralcodec.decompress(data_nic, weights=str(tuned)))
    assert plain.shape == sharp.shape and not np.array_equal(plain, sharp)

    # a fine-tune that moved the encoder is not a decoder-only fine-tune: refused
    r.train_only = []
    train(r, tmp_path / "full", init_weights=str(base), progress=False)
    from neuralcodec.zoo.weights_io import WeightsError

    with pytest.raises(WeightsError, match="decoder-only"):
        export_run(tmp_path / "full", tmp_path / "full.safetensors", decodes=str(base))
    res = CliRunner().invoke(cli.main, ["export", str(tmp_path / "full"), "-o", str(tmp_path / "f.safetensors"),
                                        "--decodes", str(base)])
    assert res.exit_code == 1 and "decoder-only" in res.output and not (tmp_path / "f.safetensors").exists()


def test_decompress_perceptual_without_a_shipped_one_says_so():
    data = neuralcodec.compress(photo(40, 40, 2), 50)
    with pytest.raises(neuralcodec.api.DecodeError, match="no perceptual decoder"):
        neuralcodec.decompress(data, perceptual=True)


def test_compress_model_option(tmp_path):
    Image.fromarray(photo(40, 40, 3)).save(tmp_path / "a.png")
    r = CliRunner().invoke(cli.main, ["compress", str(tmp_path / "a.png"), "--model", "nosuch"])
    assert r.exit_code == 2 and "unknown model 'nosuch'" in r.output and "lighthp" in r.output
    r = CliRunner().invoke(cli.main, ["compress", str(tmp_path / "a.png"), "--model", "resgdn"])
    assert r.exit_code == 2 and "no weights ship for model 'resgdn'" in r.output and "train --arch resgdn" in r.output
    r = CliRunner().invoke(cli.main, ["compress", str(tmp_path / "a.png"), "--model", "modhp", "--quiet"])
    assert r.exit_code == 0 and (tmp_path / "a.nic").exists()


def test_eval_makes_one_curve_of_several_fixed_rate_weights(tiny_weights, tmp_path):
    arch, w = tiny_weights
    if arch != "lighthp":
        pytest.skip("one architecture is enough")
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(photo(176, 176, 1)).save(d / "a.png")  # MS-SSIM's five scales need > 160 px
    other = tmp_path / "other.safetensors"  # a second "rate": same weights under another name
    other.write_bytes(w.read_bytes())
    r = CliRunner().invoke(cli.main, ["eval", str(d), "--weights", str(w), "--weights", str(other),
                                      "--against", "jxl", "-o", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "rep" / "neuralcodec.json").read_text())
    assert rep["name"] == "neuralcodec lighthp" and rep["results"]["quality"] == ["lighthp", "other"]
    if "jxl" not in available_classic():  # a codec Pillow cannot write is skipped, and says so
        assert "cannot write jxl; skipped" in r.output
        assert json.loads((tmp_path / "rep" / "report.json").read_text())["skipped"] == ["jxl"]


def test_tiled_transforms_match_one_pass(tiny_weights, monkeypatch):
    """Every model's tiles see enough context (its tile_halo): no seams, the file decodes as one pass would."""
    from neuralcodec.pipeline import tiling

    from neuralcodec.format.bitstream import tile_geometry_error

    arch, w = tiny_weights
    codec = load_codec(str(w), "cpu")
    tr = codec.transforms
    assert tile_geometry_error(*tr.tile_geometry()) is None  # the default tile leaves room for every model's halo
    monkeypatch.setattr(tiling, "TILE", 4)  # 64 px tiles: many borders on a small image
    rgb = photo(150, 190, 4)
    t = codec.t(0)
    whole = tr._analysis(tr.window(rgb)[None], t)[0]
    tiled = tr.analysis(rgb, t)
    if arch == "vqvae":  # indices: a near-tie may flip; almost all must agree
        assert (tiled == whole).mean() > 0.99
    else:
        assert np.abs(tiled - whole).max() < 1e-4 * max(1.0, np.abs(whole).max())
    decoded = codec.quantize(whole.copy(), 0, values=True)
    hats = codec.synthesis_inputs(decoded)
    one = np.round(np.clip(tr._synthesis([h[None] for h in hats], t)[0, :, :150, :190], 0, 1) * 255)
    many = tr.synthesis(hats, t, 150, 190)
    assert np.abs(many.astype(int) - one.transpose(1, 2, 0).astype(int)).max() <= 1


def test_perceptual_and_weights_exclude_each_other(tmp_path):
    (tmp_path / "a.nic").write_bytes(neuralcodec.compress(photo(32, 32, 1), 50))
    r = CliRunner().invoke(cli.main, ["decompress", str(tmp_path / "a.nic"), "--perceptual", "--weights", "flagship"])
    assert r.exit_code == 2 and "--perceptual" in r.output


def test_ms_ssim_distortion_trains(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    Image.fromarray(photo(130, 140, 1)).save(d / "a.png")
    r = Recipe(arch="resgdn", model=TINY["resgdn"], data=str(d), crop=112, batch=2, steps=2, warmup=1, threads=1,
               log_every=1, checkpoint_minutes=100, distortion="ms-ssim")
    train(r, tmp_path / "run", progress=False)
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(x["loss"]) for x in log)
