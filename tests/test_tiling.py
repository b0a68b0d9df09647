"""Tiled transforms (bounded memory on big images) give what one pass gives: no seams, same PSNR."""

import numpy as np
import pytest
import torch

from neuralcodec.pipeline import tiling
from neuralcodec.api import load_codec

from conftest import photo, psnr


def edgy(h, w):
    """A photo with hard diagonal edges and stripes crossing every tile border."""
    img = photo(h, w, 9).astype(np.int16)
    yy, xx = np.mgrid[0:h, 0:w]
    img[(xx + 2 * yy) % 37 < 9] = [250, 20, 20]
    img[(xx // 5) % 7 == 0] //= 3
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def small_tiles(monkeypatch):
    monkeypatch.setattr(tiling, "TILE", 3)  # 48 px tiles: many borders on a small image


def test_tiled_analysis_and_synthesis_match_one_pass(small_tiles):
    codec = load_codec()
    rgb = edgy(150, 190)
    t = codec.t(40000)
    with torch.inference_mode():
        whole = codec.model.analysis(codec.transforms.padded(rgb), torch.tensor([t]))[0].numpy()
        tiled = codec.transforms.analysis(rgb, t)
        assert tiled.shape == whole.shape
        assert np.abs(tiled - whole).max() < 1e-4 * max(1.0, np.abs(whole).max())
        y_hat = np.round(whole)
        one = codec.model.synthesis(torch.from_numpy(y_hat)[None], torch.tensor([t]))[0, :, :150, :190]
        one = one.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        many = codec.transforms.synthesis([y_hat], t, 150, 190)
    assert many.shape == (150, 190, 3) and many.dtype == np.uint8
    assert np.abs(many.astype(int) - one.astype(int)).max() <= 1


def test_tiled_file_decodes_like_untiled():
    import neuralcodec

    rgb = edgy(130, 170)
    tiled = np.asarray(neuralcodec.decompress(neuralcodec.compress(rgb, 70, tile=128)))
    untiled = np.asarray(neuralcodec.decompress(neuralcodec.compress(rgb, 70, tile=1024)))  # one tile
    assert abs(psnr(tiled, rgb) - psnr(untiled, rgb)) < 0.05
    # no seams: the error along tile borders (every 128 px) is no worse than elsewhere
    err = np.abs(tiled.astype(int) - rgb.astype(int)).mean(axis=(0, 2))
    border = np.array([c for c in range(1, 170) if c % 128 in (0, 127)])
    assert err[border].mean() < 1.5 * err.mean() + 1


def test_tile_geometry_is_recorded_and_followed(monkeypatch):
    """The file says how its transforms were tiled; the decoder uses that, with no options."""
    import neuralcodec

    rgb = edgy(100, 140)
    data = neuralcodec.compress(rgb, 50, tile=128)
    info = neuralcodec.info(data)
    codec = load_codec()
    assert info["format_version"] == 7 and (info["tile"], info["halo"]) == (8, codec.transforms.tile_geometry()[1])
    assert codec.transforms.halo == 2  # the flagship's receptive field: version 7 (a 0.7 decoder asks for 4)
    one = neuralcodec.info(neuralcodec.compress(rgb, 50))  # one tile uses no halo: 4 keeps older decoders reading it
    assert (one["tile"], one["halo"], one["format_version"]) == (tiling.TILE, 4, 6)
    seen = []
    real = tiling.TiledTransforms.synthesis
    monkeypatch.setattr(tiling.TiledTransforms, "synthesis", lambda self, *a: seen.append(a[-1]) or real(self, *a))
    neuralcodec.decompress(data)
    assert seen == [(8, info["halo"])]
    with pytest.raises(ValueError, match="tile must be within"):
        neuralcodec.compress(rgb, 50, tile=8)
    with pytest.raises(ValueError, match="tile must be within 128..1024"):
        neuralcodec.compress(rgb, 50, tile=64)


def test_a_tile_too_small_for_the_models_halo_says_which_tiles_fit(monkeypatch):
    codec = load_codec()
    monkeypatch.setattr(codec.transforms, "halo", 12)  # a model with a wider receptive field (dcuvae's)
    with pytest.raises(ValueError, match=r"cannot use tiles of 128 px .*its tiles are 384\.\.896 px"):
        codec.transforms.tile_geometry(8)
    assert codec.transforms.tile_geometry(24) == (24, 12)


def test_tile_geometry_that_does_not_fit_the_model_is_refused(rgb64):
    import neuralcodec
    from neuralcodec.format import bitstream
    from neuralcodec.api import DecodeError

    c = bitstream.unpack(neuralcodec.compress(rgb64, 50))
    c.header.halo = 1  # less context than the model's receptive field: seams; refused
    with pytest.raises(DecodeError, match="tile geometry"):
        neuralcodec.decompress(bitstream.pack(c))


def test_hostile_tile_geometry_is_refused_by_the_parser(rgb64):
    """Huge tiles would make the decoder allocate huge activations: the header check refuses them."""
    import struct
    import zlib

    import neuralcodec
    from neuralcodec.format import bitstream

    data = bytearray(neuralcodec.compress(rgb64, 50))
    _, _, pos = bitstream.parse_header(bytes(data))
    crc_at = pos - 4
    for tile, halo in ((0, 4), (65535, 4), (48, 1000), (1, 0), (8, 5), (64, 9)):
        data[crc_at - 5:crc_at - 1] = struct.pack("<HH", tile, halo)
        data[crc_at:pos] = struct.pack("<I", zlib.crc32(bytes(data[:crc_at])))
        with pytest.raises(bitstream.FormatError, match="bad tile geometry"):
            bitstream.unpack(bytes(data))


def test_batched_tiles_match_one_at_a_time(small_tiles):
    """Equal-sized tiles batched in one call (the GPU path) give the same y and pixels as one by one."""
    codec = load_codec()
    rgb = edgy(150, 190)
    t = codec.t(30000)
    one = codec.transforms.analysis(rgb, t)
    pix = codec.transforms.synthesis([np.round(one)], t, 150, 190)
    codec.transforms.batch_area = 4 * 11 * 11  # four 3-latent tiles with their 4-latent halos per call
    try:
        many = codec.transforms.analysis(rgb, t)
        pix_many = codec.transforms.synthesis([np.round(one)], t, 150, 190)
    finally:
        codec.transforms.batch_area = 0
    assert np.abs(many - one).max() < 1e-4 * max(1.0, np.abs(one).max())
    assert np.abs(pix.astype(int) - pix_many.astype(int)).max() <= 1


def test_half_precision_transforms_round_trip():
    """fp16 transforms (a GPU option; autocast works on the CPU too) code files every decoder reads."""
    import neuralcodec

    rgb = edgy(96, 128)
    full = np.asarray(neuralcodec.decompress(neuralcodec.compress(rgb, 60)))
    data = neuralcodec.compress(rgb, 60, precision="fp16")
    for precision in ("fp32", "fp16"):
        half = np.asarray(neuralcodec.decompress(data, precision=precision))
        assert abs(psnr(half, rgb) - psnr(full, rgb)) < 0.3


def test_cli_tile_and_half_options(tmp_path):
    """`compress --tile PIXELS --half` writes the tile into the file; `info` shows it; `decompress --half` reads it."""
    import json

    from click.testing import CliRunner
    from PIL import Image

    from neuralcodec.cli import main as cli

    Image.fromarray(edgy(80, 100)).save(tmp_path / "a.png")
    r = CliRunner().invoke(cli.main, ["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.nic"), "--tile", "256",
                                      "--half", "-q", "40"])
    assert r.exit_code == 0, r.output
    info = json.loads(CliRunner().invoke(cli.main, ["info", str(tmp_path / "a.nic"), "--json"]).output)
    assert info["tile"] == 16 and info["format_version"] == 6
    r = CliRunner().invoke(cli.main, ["decompress", str(tmp_path / "a.nic"), "-o", str(tmp_path / "out.png"), "--half"])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "out.png").size == (100, 80)
    r = CliRunner().invoke(cli.main, ["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.nic"), "--tile", "64"])
    assert r.exit_code == 2 and "128<=x<=1024" in r.output.replace(" ", "")


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_the_flagships_halo_of_2_gives_exactly_what_a_halo_of_4_gives(backend, monkeypatch):
    """Its receptive field is under 2 latents (models/modulated.py): tiles with the halo of format version 7 code
    the same latents as the old halo of 4, and decode to the same pixels; with 1 they would not."""
    import neuralcodec
    from neuralcodec.format import bitstream

    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    rgb = edgy(140, 300)
    codec = load_codec(backend=backend)  # float32: a bfloat16 analysis is not the same on other tile shapes
    assert codec.transforms.halo == 2
    files = {}
    for halo in (2, 4, 1):
        monkeypatch.setattr(codec.transforms, "halo", halo)
        files[halo] = bitstream.unpack(neuralcodec.compress(rgb, 40, tile=128, backend=backend, precision="fp32"))
    assert files[2].chunks == files[4].chunks and files[2].header.halo == 2 and files[2].header.version == 7
    assert files[1].chunks != files[2].chunks
    c = files[2]
    hats = codec.synthesis_inputs(codec.decode_latents(c.header, c.chunks))
    t = codec.t(c.header.rate)
    two, four = (codec.transforms.synthesis(hats, t, 140, 300, (8, h)) for h in (2, 4))
    assert np.array_equal(two, four) if backend == "onnx" else np.abs(two.astype(int) - four.astype(int)).max() <= 1
