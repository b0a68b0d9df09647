"""Files decode to the same latents whatever the thread count, batch or device (issue 4)."""

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import neuralcodec
from neuralcodec.format import bitstream
from neuralcodec.cli import main as cli
from neuralcodec.api import load_codec

from conftest import photo, psnr

GOLDEN = Path(__file__).parent / "golden"


def latents(data: bytes, device: str = "cpu"):
    """(z symbols, y table indexes, y symbols, decoded y) of a file."""
    from neuralcodec.zoo import catalog

    c = bitstream.unpack(data)
    codec = load_codec(catalog.shipped().get(c.header.weights_digest), device)
    z, y = codec.decode_latents(c.header, c.chunks)
    # digests are defined over int32 symbols, int64 table indexes and the float32 decoded y
    return z.symbols.astype(np.int32), y.indexes.astype(np.int64), y.symbols, y.value


def all_latents(data: bytes, device: str = "cpu"):
    """Every level's int32 symbols, int64 table indexes (where it has them) and float32 decoded value."""
    from neuralcodec.zoo import catalog

    c = bitstream.unpack(data)
    codec = load_codec(catalog.shipped().get(c.header.weights_digest), device)
    out = []
    for level in codec.decode_latents(c.header, c.chunks):
        out.append(level.symbols.astype(np.int32))
        if level.indexes is not None:
            out.append(level.indexes.astype(np.int64))
        if level.value is not None:
            out.append(level.value)
    return out


def latent_digest(data: bytes) -> str:
    """sha256 of a file's latents: (z symbols, y indexes, y symbols, y) for the two-level models (the digests
    of the first golden files), every level's for the others."""
    d = hashlib.sha256()
    try:
        arrays = latents(data)
    except ValueError:  # not two levels
        arrays = all_latents(data)
    for a in arrays:
        d.update(np.ascontiguousarray(a).tobytes())
    return d.hexdigest()


def with_threads(n, fn, *args):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(old)


def same(a, b):
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_thread_count_changes_nothing():
    img = photo(70, 90, 4)
    one = with_threads(1, neuralcodec.compress, img, 60)
    two = with_threads(2, neuralcodec.compress, img, 60)
    # any encoder's file decodes identically under any thread count
    for data in (one, two):
        same(with_threads(1, latents, data), with_threads(2, latents, data))
        a = np.asarray(with_threads(1, neuralcodec.decompress, data))
        b = np.asarray(with_threads(2, neuralcodec.decompress, data))
        assert abs(psnr(a, img) - psnr(b, img)) < 0.01
    # and the y/z payloads themselves agree here (the encoder's float analysis happens to be stable)
    assert bitstream.unpack(one).chunks == bitstream.unpack(two).chunks


def test_alone_or_in_a_batch_gives_the_same_file(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(photo(40 + 8 * i, 56, i)).save(src / f"{i}.png")
    r = CliRunner().invoke(cli.main, ["compress", str(src), "-o", str(tmp_path / "out"), "-q", "30", "--quiet",
                                      "-j", "2"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    for i in range(3):
        alone = neuralcodec.compress(Image.open(src / f"{i}.png"), 30)
        batch = (tmp_path / "out" / f"{i}.nic").read_bytes()
        same(latents(alone), latents(batch))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cpu_and_cuda_agree_on_latents():
    img = photo(96, 128, 6)
    for enc in ("cpu", "cuda"):
        data = neuralcodec.compress(img, 40, device=enc)
        same(latents(data, "cpu"), latents(data, "cuda"))
        a = np.asarray(neuralcodec.decompress(data, device="cpu"))
        b = np.asarray(neuralcodec.decompress(data, device="cuda"))
        assert abs(psnr(a, img) - psnr(b, img)) < 0.05


def golden_cases():
    manifest = GOLDEN / "golden.json"
    return json.loads(manifest.read_text())["files"] if manifest.exists() else []


@pytest.mark.parametrize("case", golden_cases(), ids=lambda c: c["file"])
def test_golden_files_still_decode(case):
    """Committed files of earlier builds: same latents, same PSNR. Never regenerate these to make a test pass;
    a format or weights change must keep them decodable or refuse them by version (docs/bitstream.md)."""
    data = (GOLDEN / case["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == case["file_sha256"]
    assert latent_digest(data) == case["latent_sha256"]
    info = neuralcodec.info(data)
    assert info["format_version"] == case["format_version"] and (info["tile"] == 0) == (case["format_version"] == 2)
    src_img = Image.open(GOLDEN / case["source"])
    out_img = neuralcodec.decompress(data)
    assert out_img.mode == src_img.mode and out_img.size == src_img.size
    if "A" in src_img.mode:  # alpha is lossless
        assert np.array_equal(np.asarray(out_img.getchannel("A")), np.asarray(src_img.getchannel("A")))
    src, out = np.asarray(src_img.convert("RGB")), np.asarray(out_img.convert("RGB"))
    assert abs(psnr(out, src) - case["psnr"]) < 0.005
    header = bitstream.unpack(data).header
    if header.deblock and out_img.mode == "RGB":  # versions 5 and 6: the filters the file asks for, applied once
        from neuralcodec.pipeline.deblock import deblock, ramp, thresholds

        raw = np.array(neuralcodec.decompress(data, deblock=False))
        assert np.array_equal(out, deblock(ramp(raw) if header.ramp else raw, 16, *thresholds(header.rate)))


def test_a_golden_file_exercises_the_deblocking_filter():
    changed = [c["file"] for c in golden_cases() if bitstream.unpack((GOLDEN / c["file"]).read_bytes()).header.deblock
               and (np.asarray(neuralcodec.decompress((GOLDEN / c["file"]).read_bytes()))
                    != np.asarray(neuralcodec.decompress((GOLDEN / c["file"]).read_bytes(), deblock=False))).any()]
    assert changed  # e.g. rgb-130x67-2f62ce88-q10.nic


def test_a_golden_file_exercises_the_ramp_filter():
    from neuralcodec.pipeline.deblock import ramp

    ramped = []
    for c in golden_cases():
        data = (GOLDEN / c["file"]).read_bytes()
        if bitstream.unpack(data).header.ramp:
            raw = np.array(neuralcodec.decompress(data, deblock=False))
            ramped += [c["file"]] if (ramp(raw.copy()) != raw).any() else []
    assert ramped  # smooth-96x64-9221bba5-q20.nic


@pytest.mark.parametrize("case", [c for c in golden_cases() if "weights" in c], ids=lambda c: c["file"])
def test_golden_files_are_reencoded_byte_for_byte(case):
    """The encoder is pinned too: on the CPU (torch), the source coded again with the weights that made a golden
    file gives the same bytes, while those weights still encode (a superseded flagship ships decoder-only).
    Alpha is the exception by design: since format version 4 it is coded WebP-lossless where that is smaller
    (ALPW), so an alpha file pins its header and latent chunks, and its alpha plane decodes the same."""
    from neuralcodec.api import load_codec
    from neuralcodec.zoo import catalog

    made = (GOLDEN / case["file"]).read_bytes()
    name = catalog.shipped()[bitstream.unpack(made).header.weights_digest]  # its name now
    if catalog.is_decoder_only(name):
        pytest.skip(f"{name} ships decoder-only now")
    if catalog.card(name)["digest"] != bitstream.unpack(made).header.weights_digest.hex():
        pytest.skip(f"{name} decodes it (the same decoder, a newer analysis: same_decoder_as)")
    args = (Image.open(GOLDEN / case["source"]), case["quality"])
    old = bitstream.unpack(made)
    grid = load_codec(name, "cpu").grid  # pixels per latent of y: the file's own tile, as it was made
    options = dict(weights=name, device="cpu", tile=case.get("tile") or old.header.tile * grid or None, backend="torch")
    data = neuralcodec.compress(*args, deblock=old.header.deblock, **options)  # as the file was made
    new = bitstream.unpack(data)
    from neuralcodec.pipeline.deblock import ramp_wanted

    h = old.header
    if old.header.version < 7 and new.header.halo < bitstream.OLD_MIN_HALO:  # made before the model's halo of 2
        # (version 7): the same file with the halo it recorded then
        assert new.header.version == 7 and old.header.halo == bitstream.OLD_MIN_HALO
        new.header = dataclasses.replace(new.header, halo=old.header.halo)
        data = bitstream.pack(new)
        new = bitstream.unpack(data)
    if old.header.version < 6 and new.header.ramp:  # made before the ramp flag (version 6): the same file, flagged
        assert new.header.deblock and new.header.version == 6 and ramp_wanted(16, h.rate, h.height, h.width)
        new.header = dataclasses.replace(new.header, flags=new.header.flags & ~bitstream.FLAG_RAMP)
        data = bitstream.pack(new)
        new = bitstream.unpack(data)
    if not old.header.deblock:  # made before the deblocking flag: the default now is the same file, flagged
        flagged = bitstream.unpack(neuralcodec.compress(*args, **options))
        ramp = bitstream.FLAG_RAMP if flagged.header.ramp else 0
        assert flagged.header.ramp == ramp_wanted(16, h.rate, h.height, h.width)
        assert flagged.header.flags == new.header.flags | bitstream.FLAG_DEBLOCK | ramp and flagged.chunks == new.chunks
        assert flagged.header.version == (7 if flagged.header.halo < bitstream.OLD_MIN_HALO else 6 if ramp else 5)
        assert dataclasses.replace(flagged.header, flags=new.header.flags, halo=new.header.halo) == new.header
    if not old.header.has_alpha:
        assert hashlib.sha256(data).hexdigest() == case["file_sha256"]
        return
    assert new.header == old.header and new.header.version == 4
    assert [t for t in new.chunks if t not in bitstream.ALPHA_TAGS] == [t for t in old.chunks if t != b"ALPH"]
    assert all(new.chunks[t] == old.chunks[t] for t in old.chunks if t != b"ALPH")
    from neuralcodec.format import imaging

    (tag,) = [t for t in new.chunks if t in bitstream.ALPHA_TAGS]
    assert np.array_equal(imaging.unpack_alpha(tag, new.chunks[tag], h.height, h.width),
                          imaging.unpack_alpha(b"ALPH", old.chunks[b"ALPH"], h.height, h.width))


def test_golden_files_exist():
    assert len(golden_cases()) >= 3


def test_every_weights_card_ships_its_weights():
    """Weights that made files are never removed: each card in the package names a present weights file with
    the card's digest (a superseded file too; `bench/device_prep.py` moves them aside only for a device run)."""
    from neuralcodec.zoo import catalog, weights_io

    cards = sorted(catalog._weights_dir().glob("*.json"))
    assert any(c.stem == "flagship" for c in cards)
    for card in cards:
        meta = json.loads(card.read_text())
        if "digest" not in meta:
            continue
        w = weights_io.load(card.with_suffix(".safetensors"))  # raises if missing or if the digest differs
        assert w.digest.hex() == meta["digest"], card.name


def test_every_shipped_flagship_has_a_golden_file_and_archives_decode_only():
    """Each flagship weights that ever shipped has a golden file made while its encoder shipped (so its
    decoder-only archive is proven to decode it), and each archive lacks exactly the analysis transforms."""
    from neuralcodec.zoo import catalog, weights_io
    from neuralcodec.models import architecture

    golden = {neuralcodec.info((GOLDEN / c["file"]).read_bytes())["weights_digest"] for c in golden_cases()}
    by_digest = catalog.shipped()
    for card in sorted(catalog._weights_dir().glob("*.json")):
        meta = json.loads(card.read_text())
        if meta.get("arch") != "modhp":
            continue
        made = meta["decodes"] if meta.get("decoder_only") else meta["digest"]
        assert made in golden, f"no golden file made with {card.stem} ({made[:8]})"
        assert by_digest[bytes.fromhex(made)] == card.stem
        if meta.get("decoder_only"):
            w = weights_io.load(card.with_suffix(".safetensors"))
            assert w.decoder_only and w.decodes.hex() == made
            drop = architecture("modhp").analysis_modules
            assert not any(k.startswith(drop) for k in w.tensors) and "g_s.0.weight" in w.tensors
