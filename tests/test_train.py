"""Training, resuming, exporting and using a tiny model end to end (seconds, not minutes)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import neuralcodec
from neuralcodec.zoo import catalog, weights_io
from neuralcodec.train.loop import Recipe, export_run, train

from conftest import photo


def tiny_recipe(data: Path) -> Recipe:
    return Recipe(model={"N": 8, "M": 8, "lmbda_min": 0.0015, "lmbda_max": 0.2}, data=str(data), crop=64, batch=2,
                  steps=3, warmup=1, threads=1, log_every=1, checkpoint_minutes=100)


def test_train_resume_export_and_code(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        Image.fromarray(photo(70, 80, i)).save(data / f"{i}.jpg", quality=95)
    run = tmp_path / "run"
    r = tiny_recipe(data)
    train(r, run, progress=False)
    assert len((run / "log.jsonl").read_text().splitlines()) == 3
    r.steps = 5
    train(r, run, progress=False)  # resumes from the checkpoint at step 3
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == [1, 2, 3, 4, 5]
    w = tmp_path / "tiny.safetensors"
    digest = export_run(run, w, "test")
    card = json.loads(w.with_suffix(".json").read_text())
    assert card["digest"] == digest.hex() and card["steps"] == 5 and card["config"]["N"] == 8

    img = photo(40, 70, 9)
    data_nic = neuralcodec.compress(img, 50, weights=str(w))
    out = np.asarray(neuralcodec.decompress(data_nic, weights=str(w)))
    assert out.shape == img.shape
    assert neuralcodec.info(data_nic)["weights_digest"] == digest.hex()

    # a fresh machine: a new run initialized from exported weights alone
    train(tiny_recipe(data), tmp_path / "run2", init_weights=str(w), progress=False)
    assert (tmp_path / "run2" / "last.pt").exists()


def test_corrupt_weights_are_refused(tmp_path):
    src = catalog.resolve(None)
    bad = tmp_path / "flagship.safetensors"
    raw = bytearray(src.read_bytes())
    raw[-100] ^= 0xFF  # inside the last tensor
    bad.write_bytes(bytes(raw))
    (tmp_path / "flagship.json").write_text(src.with_suffix(".json").read_text())
    with pytest.raises(weights_io.WeightsError, match="digest"):
        weights_io.load(bad)
    bad.write_bytes(b"not safetensors")
    with pytest.raises(weights_io.WeightsError, match="not a valid"):
        weights_io.load(bad)


def test_training_from_shipped_weights_has_finite_loss():
    """fp16 files flush compressai's tiny constants (1e-9 likelihood floor) to zero: they must not be loaded."""
    import torch

    from neuralcodec.models import build
    from neuralcodec.train.loop import rd_loss

    w = weights_io.load("flagship")
    state = weights_io.network_state(w)
    assert not any(k.endswith((".bound", ".pedestal")) for k in state)
    model = build(w.arch, **w.config)
    model.load_state_dict(state, strict=False)
    model.train()
    x = torch.from_numpy(np.stack([photo(64, 64, 1), np.zeros((64, 64, 3), np.uint8)])).permute(0, 3, 1, 2) / 255
    for t in (0.0, 1.0):
        x_noisy = x.clone()
        x_noisy[1] = torch.rand(3, 64, 64)  # noise: far-out latents, likelihoods near the floor
        loss, bpp, _ = rd_loss(model, x_noisy, torch.full((2,), t))
        assert torch.isfinite(loss) and torch.isfinite(bpp).all()


def test_time_budget_stops_training_and_carries_over_a_resume(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(photo(70, 80, 0)).save(data / "0.png")
    r = tiny_recipe(data)
    r.budget_minutes, r.steps = 0.03, 10**6  # 1.8 s: the schedule runs on the spent fraction
    run = tmp_path / "run"
    train(r, run, progress=False)
    import torch

    state = torch.load(run / "last.pt", weights_only=False)
    assert 0 < state["step"] < 10**6 and state["spent"] >= 1.8
    train(r, run, progress=False)  # the budget is spent: a resume stops at once
    assert torch.load(run / "last.pt", weights_only=False)["step"] == state["step"]


def test_a_diverging_run_stops_and_never_exports_nan(tmp_path, monkeypatch):
    """Non-finite losses are skipped, and too many in a row stop training; NaN weights are never exported."""
    import torch

    from neuralcodec.train import loop as train_mod

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(photo(70, 80, 0)).save(data / "0.png")
    real = train_mod.rd_terms

    def nan_loss(*a, **k):
        loss, *rest = real(*a, **k)
        return (loss * float("nan"), *rest)

    monkeypatch.setattr(train_mod, "rd_terms", nan_loss)
    with pytest.raises(RuntimeError, match="diverged"):
        train(tiny_recipe(data), tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    state["model"]["rate_gain"] = torch.tensor(float("nan"))
    torch.save(state, tmp_path / "run" / "last.pt")
    with pytest.raises(weights_io.WeightsError, match="NaN"):
        export_run(tmp_path / "run", tmp_path / "bad.safetensors", "test")
    assert not (tmp_path / "bad.safetensors").exists()


def test_an_extended_rate_range_reaches_the_files(tmp_path):
    """t_min < 0 (lambda below lmbda_min): trained over [t_min, 1], recorded in the card, and quality 0 codes at t_min."""
    from neuralcodec.api import load_codec, read_container
    from neuralcodec.rate import gain_fixed

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(photo(70, 80, 1)).save(data / "a.png")
    r = tiny_recipe(data)
    r.model = {**r.model, "t_min": -0.5}
    train(r, tmp_path / "run", progress=False)
    w = tmp_path / "wide.safetensors"
    export_run(tmp_path / "run", w, "test")
    assert json.loads(w.with_suffix(".json").read_text())["config"]["t_min"] == -0.5
    codec = load_codec(str(w), "cpu")
    assert codec.t(0) == -0.5 and codec.t(65535) == 1.0
    stage = codec.stages[-1]
    assert stage.t_min == -0.5
    assert gain_fixed(stage.rate_gain, 0, -0.5) == round(2**16 * math.exp(-stage.rate_gain))  # t - 1/2 = -1
    img = photo(40, 70, 2)
    for rate in (0, 65535):  # the file's latents are the encoder's at both ends of the range
        enc = codec.quantize(codec.transforms.analysis(img, codec.t(rate)), rate)
        c = read_container(neuralcodec.compress(img, rate / 655.35, weights=str(w)))
        assert c.header.rate == rate
        for e, d in zip(enc, codec.decode_latents(c.header, c.chunks)):
            assert np.array_equal(e.symbols, d.symbols)

    # the rate range is covered by the digest; a config that disagrees with it, or a hostile one, is refused
    from safetensors.numpy import load_file, save_file
    from safetensors import safe_open

    with safe_open(str(w), framework="numpy") as f:
        meta = f.metadata()
    tensors = load_file(str(w))
    for t_min in (-0.25, 0.5, float("nan"), "x"):
        bad = tmp_path / "bad.safetensors"
        save_file(tensors, str(bad), metadata={**meta, "config": json.dumps({**r.model, "t_min": t_min})})
        with pytest.raises(weights_io.WeightsError):
            load_codec(str(bad), "cpu")


def test_rate_sampling_can_favour_the_rates_above_an_extension():
    from neuralcodec.train.loop import sample_t

    old = np.random.default_rng(3)
    assert np.array_equal(sample_t(np.random.default_rng(3), 64, -0.3),  # None: the uniform draw runs used
                          (-0.3 + 1.3 * old.random(64)).astype(np.float32))
    t = sample_t(np.random.default_rng(4), 20_000, -0.3, low_t_share=0.15)
    assert t.min() >= -0.3 and t.max() < 1
    assert abs((t < 0).mean() - 0.15) < 0.01 and abs(t[t >= 0].mean() - 0.5) < 0.01
    assert np.array_equal(sample_t(np.random.default_rng(4), 8, 0.0, 0.15),  # no extension: nothing to favour
                          sample_t(np.random.default_rng(4), 8, 0.0))


def test_rate_sampling_can_favour_the_top_half():
    from neuralcodec.train.loop import TrainingError, sample_t

    rng, old = np.random.default_rng(5), np.random.default_rng(5)
    low, u = old.random(64) < 0.3, old.random(64)  # the draws runs made before high_t_share existed
    assert np.array_equal(sample_t(rng, 64, -0.3, 0.3, high_t_share=0.0),
                          np.where(low, -0.3 * (1 - u), u).astype(np.float32))
    assert rng.random() == old.random()  # and the stream goes on where it did (the crops come from it next)
    t = sample_t(np.random.default_rng(6), 40_000, -0.3, low_t_share=0.3, high_t_share=0.4)
    assert t.min() >= -0.3 and t.max() < 1
    assert abs((t < 0).mean() - 0.6 * 0.3) < 0.01  # the low share applies to the draws not replaced
    assert abs((t >= 0.5).mean() - (0.4 + 0.6 * 0.7 * 0.5)) < 0.01
    with pytest.raises(TrainingError, match="high_t_share"):
        sample_t(np.random.default_rng(6), 4, -0.3, high_t_share=1.5)


def test_cli_data_option_replaces_the_recipes_directory(tmp_path):
    from click.testing import CliRunner

    from neuralcodec.cli.main import main

    data = tmp_path / "elsewhere"
    data.mkdir()
    Image.fromarray(photo(70, 80, 1)).save(data / "a.jpg", quality=95)
    recipe = tmp_path / "r.json"
    r = tiny_recipe(tmp_path / "missing")  # the recipe's own directory does not exist
    recipe.write_text(json.dumps({k: getattr(r, k) for k in r.__dataclass_fields__}))
    res = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "--data", str(data), "--run-dir",
                                    str(tmp_path / "run"), "--steps", "1"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert saved["data"] == str(data) and (tmp_path / "run" / "last.pt").exists()


def test_retired_weights_decode_their_files_and_refuse_to_encode(tmp_path):
    """A decoder-only archive (`neuralcodec retire`) decodes the files of the weights it came from, pixel for
    pixel, is smaller, and refuses every use that needs the analysis transforms, with a clear message."""
    import torch
    from click.testing import CliRunner

    from neuralcodec.cli import main as cli
    from neuralcodec.api import load_codec

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(photo(70, 80, 0)).save(data / "0.png")
    train(tiny_recipe(data), tmp_path / "run", progress=False)
    full, archive = tmp_path / "full.safetensors", tmp_path / "archive.safetensors"
    export_run(tmp_path / "run", full, "test")
    img = photo(40, 70, 9)
    files = [neuralcodec.compress(img, q, weights=str(full)) for q in (0, 60, 100)]

    r = CliRunner().invoke(cli.main, ["retire", str(full), "-o", str(archive)])
    assert r.exit_code == 0, r.output
    w, src = weights_io.load(archive), weights_io.load(full)
    card = json.loads(archive.with_suffix(".json").read_text())
    assert w.decoder_only and w.decodes == src.digest and card["decodes"] == src.digest.hex()
    assert card["digest"] == w.digest.hex() and card["steps"] == 3  # the source card's record is kept
    assert not any(k.startswith(("g_a.", "h_a.", "mod_a.")) for k in w.tensors)
    assert all(np.array_equal(v, src.tensors[k]) for k, v in w.tensors.items())
    assert archive.stat().st_size < full.stat().st_size  # tables dominate a tiny model; a third less at full size
    for f in files:
        assert np.array_equal(np.asarray(neuralcodec.decompress(f, weights=str(archive))),
                              np.asarray(neuralcodec.decompress(f, weights=str(full))))

    with pytest.raises(weights_io.WeightsError, match="decoder-only"):
        neuralcodec.compress(img, 50, weights=str(archive))
    with pytest.raises(weights_io.WeightsError, match="decoder-only"):
        train(tiny_recipe(data), tmp_path / "run2", init_weights=str(archive), progress=False)
    Image.fromarray(img).save(tmp_path / "img.png")
    r = CliRunner().invoke(cli.main, ["compress", str(tmp_path / "img.png"), "--weights", str(archive)])
    assert r.exit_code == 2 and "decoder-only" in r.output and not (tmp_path / "img.nic").exists()
    for args in (["compress", str(tmp_path / "img.png"), "--model", str(archive)],
                 ["eval", str(tmp_path), "--weights", str(archive)],
                 ["train", "--run-dir", str(tmp_path / "run3"), "--init-weights", str(archive)]):
        r = CliRunner().invoke(cli.main, args)
        assert r.exit_code == 2 and "decoder-only" in r.output, args
    with pytest.raises(weights_io.WeightsError, match="decoder-only"):  # the untrained analysis never runs
        load_codec(str(archive), "cpu").model.analysis(torch.zeros(1, 3, 64, 64), torch.ones(1))

    r = CliRunner().invoke(cli.main, ["retire", str(archive), "-o", str(tmp_path / "again.safetensors")])
    assert r.exit_code == 1 and "already decodes" in r.output
    r = CliRunner().invoke(cli.main, ["retire", str(full), "-o", str(archive)])  # another existing file
    assert r.exit_code == 2 and "-f" in r.output
    r = CliRunner().invoke(cli.main, ["retire", str(full), "-o", str(catalog.resolve(None))])
    assert r.exit_code == 2 and "default weights" in r.output


def test_bf16_interior_trains_close_to_float32_and_never_touches_inference(tmp_path):
    import torch

    from neuralcodec.models import build
    from neuralcodec.train.loop import TrainingError, rd_terms, resolve_precision

    torch.manual_seed(0)
    model = build("modhp", N=16, M=24)
    x = torch.from_numpy(photo(64, 64, 2)).permute(2, 0, 1)[None].float() / 255
    t = torch.tensor([0.3])

    def run(dtype):
        model.interior_dtype = dtype
        model.zero_grad()
        torch.manual_seed(1)  # the same rate-term noise
        loss, _, _, out = rd_terms(model, x, t)
        loss.backward()
        return loss.item(), out, model.g_a[0].weight.grad.clone()

    l32, out32, g32 = run(None)
    l16, out16, g16 = run(torch.bfloat16)
    assert out16["x_hat"].dtype == torch.float32 and out16["likelihoods"]["y"].dtype == torch.float32
    assert abs(l16 - l32) < 0.01 * abs(l32)
    assert torch.nn.functional.cosine_similarity(g16.flatten(), g32.flatten(), 0) > 0.99
    model.eval()  # inference never autocasts
    with torch.no_grad():
        model.interior_dtype = torch.bfloat16
        y16 = model.analysis(x, t)
        model.interior_dtype = None
        assert torch.equal(y16, model.analysis(x, t))

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(photo(70, 80, 0)).save(data / "0.png")
    r = tiny_recipe(data)
    r.precision = "bf16"
    train(r, tmp_path / "run", progress=False)
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(math.isfinite(x["loss"]) for x in log)
    assert resolve_precision("auto", "cpu") in ("fp32", "bf16")
    with pytest.raises(TrainingError, match="precision"):
        resolve_precision("fp8", "cpu")


def test_smooth_share_mixes_synthetic_gradients_into_batches():
    from neuralcodec.train.loop import sample_batch, smooth_crop

    images = [np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)]
    plain = sample_batch(images, 32, 6, np.random.default_rng(5))
    assert np.array_equal(plain, sample_batch(images, 32, 6, np.random.default_rng(5), 0.0))  # the old stream
    mixed = sample_batch(images, 32, 64, np.random.default_rng(5), 0.5)
    jumps = np.abs(np.diff(mixed.astype(np.int16), axis=2)).mean(axis=(1, 2, 3))  # noise crops jump ~85 levels
    smooth = jumps < 8
    assert 16 <= smooth.sum() <= 48  # about half
    c = smooth_crop(64, np.random.default_rng(3))
    assert c.shape == (64, 64, 3) and c.dtype == np.uint8
    assert np.array_equal(c, smooth_crop(64, np.random.default_rng(3)))  # deterministic from the stream
    assert np.abs(np.diff(c.astype(np.int16), axis=0)).mean() < 8


def test_a_resumed_run_keeps_the_fused_optimizer(tmp_path, monkeypatch):
    """A checkpoint's optimizer groups carry their own implementation flags (an older run's foreach); the resumed
    run still steps with the fused Adam."""
    import torch

    steps = []
    real = torch.optim.Adam.step

    def spy(self, *a, **k):
        steps.append([g.get("fused") for g in self.param_groups])
        return real(self, *a, **k)

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(photo(70, 80, 0)).save(data / "0.jpg", quality=95)
    recipe = tiny_recipe(data)
    train(recipe, tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    for g in state["opt"]["param_groups"] + state["aux_opt"]["param_groups"]:
        g["fused"], g["foreach"] = None, True  # as a run before fused Adam saved it
    torch.save(state, tmp_path / "run" / "last.pt")
    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    recipe.steps += 2
    train(recipe, tmp_path / "run", progress=False)
    assert len(steps) == 4 and all(all(s) for s in steps)  # the main and the aux optimizer, twice
