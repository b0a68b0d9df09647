"""The flagship with a checkerboard context (``modhpc``): two-pass coding, exact, and a zero-cost start."""

import numpy as np
import pytest
import torch

import neuralcodec
from neuralcodec.format import bitstream
from neuralcodec.api import DecodeError, load_codec, read_container
from neuralcodec.models import build
from neuralcodec.rate import RATE_MAX
from neuralcodec.train.loop import Recipe, export_run, train

from conftest import photo

TINY = {"N": 8, "M": 12, "hidden": 20}


@pytest.fixture(scope="module")
def cb_weights(tmp_path_factory):
    from PIL import Image

    tmp = tmp_path_factory.mktemp("modhpc")
    for i in range(2):
        Image.fromarray(photo(70, 80, i)).save(tmp / f"{i}.png")
    recipe = Recipe(arch="modhpc", model=TINY, data=str(tmp), crop=64, batch=2, steps=3, warmup=1, threads=1,
                    log_every=1, checkpoint_minutes=100, lr=3e-3)
    train(recipe, tmp / "run", progress=False)
    w = tmp / "modhpc.safetensors"
    export_run(tmp / "run", w, "test")
    return w


def test_round_trip_is_the_models_own_output_at_every_rate(cb_weights):
    img = photo(45, 70, 3)
    codec = load_codec(str(cb_weights), "cpu")
    assert np.abs(codec.weights.tensors["int.cb_ep.4.weight"]).max() > 0  # trained: the context matters
    sizes = []
    for q in (10, 90):
        data = neuralcodec.compress(img, q, weights=str(cb_weights), precision="fp32")  # the model's own y
        c = read_container(data)
        assert c.header.model_id == "modhpc" and list(c.chunks) == [b"ZHYP", b"YLAT"]
        out = np.asarray(neuralcodec.decompress(data, weights=str(cb_weights), deblock=False))
        assert np.abs(out.astype(int) - codec.reconstruct(img, c.header.rate).astype(int)).max() <= 1
        sizes.append(len(data))
    # a 3-step model guarantees a finer quantization step at q 90, not that its latents leave zero at q 10:
    # never smaller (all-zero latents at both rates give equal files)
    assert sizes[0] <= sizes[1]


def test_decoded_latents_are_the_encoders(cb_weights):
    img = photo(64, 90, 4)
    codec = load_codec(str(cb_weights), "cpu")
    rate = 30000
    enc = codec.quantize(codec.transforms.analysis(img, codec.t(rate)), rate)
    c = read_container(neuralcodec.compress(img, rate / RATE_MAX * 100, weights=str(cb_weights), precision="fp32"))
    dec = codec.decode_latents(c.header, c.chunks)
    for e, d in zip(enc, dec):
        assert np.array_equal(e.symbols, d.symbols)
    assert np.array_equal(enc[-1].indexes, dec[-1].indexes)


def test_row_bands_do_not_change_a_bit(cb_weights, monkeypatch):
    """The integer networks run in row bands (big images); the 5x5 context's halo makes them exact."""
    from neuralcodec.coding import integer

    img = photo(300, 40, 5)  # 5 rows of z
    whole = neuralcodec.compress(img, 50, weights=str(cb_weights))
    monkeypatch.setattr(integer, "BAND_POSITIONS", 1)  # two z rows per band: many band borders
    assert neuralcodec.compress(img, 50, weights=str(cb_weights)) == whole


def test_a_truncated_anchor_stream_is_refused(cb_weights):
    c = read_container(neuralcodec.compress(photo(40, 40, 6), 50, weights=str(cb_weights)))
    c.chunks[b"YLAT"] = (2**31).to_bytes(4, "little") + c.chunks[b"YLAT"][4:]
    with pytest.raises(DecodeError, match="anchors"):
        neuralcodec.decompress(bitstream.pack(c), weights=str(cb_weights))


def test_initialized_from_the_flagship_it_is_the_flagship():
    """The context's last layer starts at zero: modhpc with modhp's weights has modhp's rate and output."""
    torch.manual_seed(0)
    flat = build("modhp", N=8, M=12).eval()
    cb = build("modhpc", N=8, M=12, hidden=20).eval()
    missing, unexpected = cb.load_state_dict(flat.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("cb_ctx.", "cb_ep.")) for k in missing)
    x, t = torch.rand(1, 3, 64, 64), torch.tensor([0.4])
    with torch.no_grad():
        a, b = flat(x, t), cb(x, t)
    assert torch.allclose(a["x_hat"], b["x_hat"]) and torch.allclose(a["likelihoods"]["y"], b["likelihoods"]["y"])


def test_the_shipped_recipe_starts_from_the_flagship_architecture():
    from neuralcodec.train.loop import default_recipe

    r = Recipe.load(default_recipe("modhpc"))
    assert r.arch == "modhpc" and {k: r.model[k] for k in ("N", "M")} == {"N": 128, "M": 192}
