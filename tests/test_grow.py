"""Flagship v2 machinery: growing y function-preservingly, waking the grown channels, the weight average,
the training GDN and the scale bound's gradient (tiny models, seconds)."""

import json

import numpy as np
import pytest
import torch

import neuralcodec
from neuralcodec.zoo import weights_io
from neuralcodec.models import build, layers
from neuralcodec.train.loop import Recipe, export_run, rd_terms, train

from conftest import photo, photo_files

CFG = {"N": 8, "lmbda_min": 0.0015, "lmbda_max": 0.2, "t_min": -0.3}


def _trained_narrow(seed: int = 0):
    """A narrow model with non-trivial weights (random, and its y channels in use)."""
    torch.manual_seed(seed)
    model = build("modhp", **CFG, M=6)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("mod_a.net.2", "mod_s.net.2")):
                p.normal_(0, 0.1)
    return model


def test_grown_model_computes_the_same_coding_values():
    narrow = _trained_narrow()
    torch.manual_seed(1)
    wide = build("modhp", **CFG, M=10)
    wide.load_state_dict(wide.grown_state(narrow.state_dict()), strict=False)
    narrow.eval(), wide.eval()
    x = torch.from_numpy(photo(64, 64, 3)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        for tv in (-0.3, 0.0, 0.5, 1.0):
            t = torch.tensor([tv])
            y0, y1 = narrow.analysis(x, t), wide.analysis(x, t)
            assert torch.allclose(y1[:, :6], y0, atol=1e-5)
            assert y1[:, 6:].abs().max() < 0.5  # the new channels all quantize to zero (their mean is 0)
            z0, z1 = narrow.hyper_analysis(y0, t), wide.hyper_analysis(y1, t)
            assert torch.allclose(z0, z1, atol=1e-5)
            (s0, m0), (s1, m1) = narrow.hyper_synthesis(z0.round(), t), wide.hyper_synthesis(z0.round(), t)
            assert torch.allclose(s1[:, :6], s0, atol=1e-5) and torch.allclose(m1[:, :6], m0, atol=1e-5)
            assert torch.all(m1[:, 6:] == 0) and torch.allclose(s1[:, 6:], torch.tensor(0.11))
            y_hat = torch.cat([torch.round(y0 - m0) + m0, torch.zeros_like(y1[:, 6:])], 1)
            assert torch.allclose(wide.synthesis(y_hat, t), narrow.synthesis(y_hat[:, :6], t), atol=1e-5)


def test_growing_refuses_a_wider_or_other_model():
    with pytest.raises(ValueError, match="cannot grow"):
        build("modhp", **CFG, M=4).grown_state(_trained_narrow().state_dict())


def test_grown_channels_get_a_gradient_and_their_rate_ramps_in():
    """The trap: grown channels that round to zero, read through zero weights, get no gradient. The synthesis
    reads them through random weights, so straight-through rounding passes a gradient to the analysis that
    makes them; during the wake-up their rate counts with a weight w (0: none of it)."""
    wide = build("modhp", **CFG, M=10)
    wide.load_state_dict(wide.grown_state(_trained_narrow().state_dict()), strict=False)
    x = torch.from_numpy(photo(64, 64, 4)).permute(2, 0, 1)[None].float() / 255
    t = torch.tensor([0.8])
    out = wide(x, t)
    assert torch.all(out["y_symbols"][:, 6:] == 0)  # they carry nothing yet
    rd_terms(wide, x, t)[0].backward()
    assert wide.g_a[6].weight.grad[6:].abs().sum() > 0
    rates = {}
    for w in (0.0, 0.5, 1.0):
        wide.wake = (6, w)
        torch.manual_seed(0)  # the same noise in the rate term each time
        lik = wide(x, t)["likelihoods"]["y"]
        rates[w] = -torch.log2(lik[:, 6:]).sum().item()
    wide.wake = None
    assert rates[0.0] == 0 and rates[0.5] == pytest.approx(rates[1.0] / 2, rel=0.05)


def test_scale_bound_passes_a_gradient_that_raises_the_scale():
    model = build("modhp", **CFG, M=6)
    z = torch.zeros(1, 8, 1, 1)
    with torch.no_grad():
        model.h_s[4].bias.zero_()
        model.h_s[4].weight.zero_()
    scales, _ = model.hyper_synthesis(z, torch.tensor([0.5]))
    assert torch.allclose(scales, torch.tensor(0.11))
    (-scales.sum()).backward()  # a loss that wants larger scales
    assert model.h_s[4].bias.grad[:6].abs().sum() > 0


def test_training_gdn_matches_compressai():
    base = layers.compressai().layers.GDN
    for inverse in (False, True):
        torch.manual_seed(0)
        ours, theirs = layers.training_gdn()(16, inverse=inverse), base(16, inverse=inverse)
        with torch.no_grad():
            ours.gamma.add_(0.01 * torch.rand(16, 16))
        theirs.load_state_dict(ours.state_dict())
        x = torch.randn(2, 16, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
        a, b = ours(x), theirs(x)
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
        ga = torch.autograd.grad(a.square().sum(), [x, ours.gamma])
        gb = torch.autograd.grad(b.square().sum(), [x, theirs.gamma])
        assert all(torch.allclose(p, q, rtol=1e-4, atol=1e-5) for p, q in zip(ga, gb))


def test_train_grows_exports_the_average_and_logs_the_grown_share(tmp_path):
    data = photo_files(tmp_path / "data", 2, 70, 80)
    narrow_run = tmp_path / "narrow"
    r = Recipe(model={**CFG, "M": 6}, data=str(data), crop=64, batch=2, steps=2, warmup=1, threads=1,
               log_every=1, checkpoint_minutes=100)
    train(r, narrow_run, progress=False)
    narrow = tmp_path / "narrow.safetensors"
    export_run(narrow_run, narrow)
    wide_run = tmp_path / "wide"
    r2 = Recipe(**{**r.__dict__, "model": {**CFG, "M": 10}, "ema_decay": 0.5, "wake_from": 6, "wake_steps": 1,
                   "steps": 3})
    train(r2, wide_run, init_weights=str(narrow), progress=False)
    log = [json.loads(x) for x in (wide_run / "log.jsonl").read_text().splitlines()]
    assert all("grown_nonzero_by_t_quarter" in rec and "ms_per_phase" in rec for rec in log)
    wide = tmp_path / "wide.safetensors"
    export_run(wide_run, wide)
    card = json.loads(wide.with_suffix(".json").read_text())
    assert card["config"]["M"] == 10 and "moving average" in card["weights"]
    state = torch.load(wide_run / "last.pt", weights_only=False)
    w = weights_io.load(wide)
    raw = state["model"]["g_s.0.weight"].numpy()
    shipped = w.tensors["g_s.0.weight"].astype(np.float32)
    avg = state["ema"][[n for n, _ in build("modhp", **CFG, M=10).named_parameters()].index("g_s.0.weight")]
    assert np.allclose(shipped, avg.numpy(), atol=1e-3) and not np.allclose(shipped, raw, atol=1e-6)
    img = photo(40, 56, 7)
    out = np.asarray(neuralcodec.decompress(neuralcodec.compress(img, 60, weights=str(wide)), weights=str(wide)))
    assert out.shape == img.shape


def test_the_wake_phase_trains_only_the_grown_entries(tmp_path):
    data = photo_files(tmp_path / "data", 2, 70, 80)
    r = Recipe(model={**CFG, "M": 6}, data=str(data), crop=64, batch=2, steps=1, warmup=1, threads=1,
               log_every=1, checkpoint_minutes=100)
    train(r, tmp_path / "narrow", progress=False)
    narrow = tmp_path / "narrow.safetensors"
    export_run(tmp_path / "narrow", narrow)
    before = weights_io.load_state_dict(narrow)
    r2 = Recipe(**{**r.__dict__, "model": {**CFG, "M": 10}, "wake_from": 6, "wake_steps": 3, "wake_lr": 1e-2,
                   "steps": 3})
    train(r2, tmp_path / "wide", init_weights=str(narrow), progress=False)
    after = torch.load(tmp_path / "wide" / "last.pt", weights_only=False)["model"]
    grown = build("modhp", **CFG, M=10).grown_entries(6)
    assert set(grown) >= {"g_a.6.weight", "g_s.0.weight", "h_s.4.weight"} and not any(k.startswith("h_a") for k in grown)
    assert torch.equal(after["g_a.6.weight"][:6], before["g_a.6.weight"])  # the old model is untouched
    assert torch.equal(after["g_s.2.weight"], before["g_s.2.weight"]) and torch.equal(after["h_a.0.weight"][:, 6:], torch.zeros_like(after["h_a.0.weight"][:, 6:]))
    assert not torch.equal(after["g_a.6.weight"][6:], torch.zeros_like(after["g_a.6.weight"][6:]))
    torch.manual_seed(r2.seed)  # the wide model's initialization in train()
    init = build("modhp", **CFG, M=10).grown_state(before)
    assert not torch.equal(after["g_s.0.weight"][6:], init["g_s.0.weight"][6:])  # the grown entries train
