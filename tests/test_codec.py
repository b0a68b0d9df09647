"""End-to-end through the real model and the real range coder, with the shipped weights."""

import numpy as np
import pytest
from PIL import Image

import neuralcodec
from neuralcodec import api
from neuralcodec.format import bitstream
from neuralcodec.api import DecodeError, load_codec
from neuralcodec.rate import rate_of_quality

from conftest import photo, psnr


def test_round_trip_matches_model_forward(rgb64):
    codec = load_codec()
    for q in (0, 50, 100):
        data = neuralcodec.compress(rgb64, q, precision="fp32")  # the model's own y (auto may run it in bfloat16)
        out = np.asarray(neuralcodec.decompress(data, deblock=False))  # the synthesis' own pixels
        ref = codec.reconstruct(rgb64, rate_of_quality(q))
        assert out.shape == rgb64.shape and out.dtype == np.uint8
        assert abs(psnr(out, rgb64) - psnr(ref, rgb64)) <= 0.01
        assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_quality_orders_size_and_fidelity():
    img = photo(128, 128, 5)
    sizes, quals = [], []
    for q in (0, 50, 100):
        data = neuralcodec.compress(img, q)
        sizes.append(len(data))
        quals.append(psnr(np.asarray(neuralcodec.decompress(data)), img))
    assert sizes[0] < sizes[1] < sizes[2]
    assert quals[0] < quals[1] < quals[2]


def test_header_fields(rgb64):
    data = neuralcodec.compress(rgb64, 37.5)
    h = neuralcodec.info(data)
    codec = load_codec()
    assert h["model"] == "modhp" and h["weights_digest"] == codec.weights.digest.hex()
    assert (h["width"], h["height"], h["channels"], h["bit_depth"], h["mode"]) == (96, 64, 3, 8, "RGB")
    assert h["rate_selector"] == round(0.375 * 65535) and h["quality"] == pytest.approx(37.5, abs=0.01)
    assert h["y_shape"] == [codec.model.M, 4, 8] and h["z_shape"] == [codec.model.N, 1, 2]
    assert set(h["chunks"]) == {"ZHYP", "YLAT"} and h["bytes"] == len(data)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 3), (63, 65), (64, 64), (130, 67)])
def test_odd_and_tiny_sizes(shape):
    img = photo(*shape, seed=3)
    out = np.asarray(neuralcodec.decompress(neuralcodec.compress(img, 80)))
    assert out.shape == img.shape


def test_grayscale_and_palette_keep_their_mode():
    g = Image.fromarray(photo(40, 40)[..., 1], "L")
    out = neuralcodec.decompress(neuralcodec.compress(g, 90))
    assert out.mode == "L" and out.size == g.size
    p = Image.fromarray(photo(40, 40)).quantize(64)
    out = neuralcodec.decompress(neuralcodec.compress(p, 90))
    assert out.mode == "P" and out.size == p.size


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_carried_losslessly(mode):
    rgba = np.dstack([photo(40, 50), np.random.default_rng(0).integers(0, 256, (40, 50), dtype=np.uint8)])
    img = Image.fromarray(rgba, "RGBA").convert(mode)
    data = neuralcodec.compress(img, 60)
    assert neuralcodec.info(data)["alpha"]
    out = neuralcodec.decompress(data)
    assert out.mode == mode
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(img.getchannel("A")))
    if mode == "RGBA":  # an alpha chunk that is more, or less, than one whole zlib stream is refused
        from neuralcodec.format import bitstream

        c = bitstream.unpack(data)
        whole = c.chunks[b"ALPH"]
        for bad in (whole + b"\0", whole[:-4]):  # trailing bytes; the stream's end (its Adler-32) missing
            c.chunks[b"ALPH"] = bad
            with pytest.raises(api.DecodeError, match="alpha chunk"):
                neuralcodec.decompress(bitstream.pack(c))


def test_unsupported_mode_is_refused_clearly():
    with pytest.raises(ValueError, match="unsupported image mode"):
        neuralcodec.compress(Image.new("F", (8, 8)), 50)


def test_16_bit_grayscale_is_coded_at_8_bits():
    g16 = (photo(40, 40)[..., 1].astype(np.uint16) * 257).astype(np.uint16)  # 8-bit values spread to 16 bits
    out = neuralcodec.decompress(neuralcodec.compress(Image.fromarray(g16), 90))
    assert out.mode == "L" and psnr(np.asarray(out), photo(40, 40)[..., 1]) > 25


def test_decoded_files_keep_modes_the_format_holds_and_never_drop_alpha(tmp_path):
    cmyk = Image.fromarray(photo(40, 40)).convert("CMYK")  # e.g. a print workflow's JPEG
    (tmp_path / "c.nic").write_bytes(neuralcodec.compress(cmyk, 80))
    api.decompress_file(tmp_path / "c.nic", tmp_path / "c.png")  # PNG has no CMYK: RGB
    assert Image.open(tmp_path / "c.png").mode == "RGB"
    api.decompress_file(tmp_path / "c.nic", tmp_path / "c.tif")
    assert Image.open(tmp_path / "c.tif").mode == "CMYK"
    rgba = Image.fromarray(np.dstack([photo(40, 40), np.full((40, 40), 7, np.uint8)]), "RGBA")
    (tmp_path / "a.nic").write_bytes(neuralcodec.compress(rgba, 80))
    for ext in (".bmp", ".ppm", ".jpg"):
        with pytest.raises(ValueError, match="cannot hold this image's alpha"):
            api.decompress_file(tmp_path / "a.nic", tmp_path / f"a{ext}")
        assert not (tmp_path / f"a{ext}").exists()
    for name in ("a.nic", "a.foo", "a.psd", "a.ico", "a.dib"):  # not written whole, or at all: refused, nothing written
        with pytest.raises(ValueError, match="cannot write"):
            api.decompress_file(tmp_path / "a.nic", tmp_path / f"x{name}")
        assert not (tmp_path / f"x{name}").exists()
    api.decompress_file(tmp_path / "a.nic", tmp_path / "plain")  # no extension: PNG
    assert Image.open(tmp_path / "plain").format == "PNG"


def test_an_image_too_wide_for_the_format_is_refused_before_coding():
    """A 1,048,513-pixel-wide strip is under the pixel limit, but the flagship's latents (its width padded to a
    multiple of 64, over 16) would not fit the header's 16-bit shapes."""
    from neuralcodec.format import imaging

    with pytest.raises(imaging.ImageError, match="sides up to 1048512 pixels"):
        neuralcodec.compress(np.zeros((1, 1_048_513, 3), np.uint8), 50)


def test_the_codec_pixel_limit_applies_not_pillows(tmp_path, monkeypatch):
    import threading

    from neuralcodec.format import imaging

    Image.fromarray(photo(20, 30)).save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow alone would refuse 600 pixels as a bomb
    assert imaging.open_image(tmp_path / "a.png", max_pixels=600).size == (30, 20)
    with pytest.raises(imaging.ImageError, match="exceeds the 599-pixel limit"):
        imaging.open_image(tmp_path / "a.png", max_pixels=599)
    threads = [threading.Thread(target=lambda: [imaging.open_image(tmp_path / "a.png") for _ in range(50)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Image.MAX_IMAGE_PIXELS == 100  # Pillow's own setting is left as it was, threads or not
    Image.fromarray(photo(20, 30)).save(tmp_path / "icon.png", format="ICO")  # decodes while opening: refused
    with pytest.raises(imaging.ImageError, match="not a PNG, JPEG"):
        imaging.open_image(tmp_path / "icon.png")


def test_reading_an_image_loads_only_the_plugins_it_may_need(tmp_path):
    """Pillow's ``Image.init()`` imports every plugin it has (~0.045 s of a one-image call); reading registers the
    six formats it reads, and every one of them still opens."""
    import subprocess
    import sys

    for fmt in ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "PPM"):
        Image.fromarray(photo(20, 30)).save(tmp_path / f"a.{fmt.lower()}", format=fmt)
        Image.fromarray(photo(20, 30)).save(tmp_path / f"{fmt}-without-extension", format=fmt)  # read by content
    Image.fromarray(photo(20, 30)).save(tmp_path / "b.jpg", format="MPO", save_all=True,
                                        append_images=[Image.fromarray(photo(20, 30, 1))])  # a multi-picture JPEG
    code = ("import sys; from PIL import Image; from neuralcodec.format import imaging\n"
            "for p in sys.argv[1:]:\n    assert imaging.open_image(p).size == (30, 20), p\n"
            "print(len(Image.OPEN), 'PSD' in Image.OPEN, 'PIL.PsdImagePlugin' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, *sorted(map(str, tmp_path.iterdir()))], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    registered, psd, psd_module = out.stdout.split()
    assert int(registered) <= 10 and psd == psd_module == "False", out.stdout  # Image.init() registers ~40


def test_foreign_weights_digest_is_refused(rgb64):
    data = bytearray(neuralcodec.compress(rgb64, 50))
    c = bitstream.unpack(bytes(data))
    c.header.weights_digest = bytes(32)
    with pytest.raises(DecodeError, match="made with weights 0000000000000000"):
        neuralcodec.decompress(bitstream.pack(c))
    c.header.model_id = "other"
    with pytest.raises(DecodeError, match="model 'other'"):
        neuralcodec.decompress(bitstream.pack(c))


def test_inconsistent_latent_shapes_are_refused(rgb64):
    c = bitstream.unpack(neuralcodec.compress(rgb64, 50))
    c.header.y_shape = (192, 400, 400)
    with pytest.raises(DecodeError, match="latent shapes"):
        neuralcodec.decompress(bitstream.pack(c))


def test_corrupt_payload_with_valid_crc_never_crashes(rgb64):
    """A forged file (payload garbage, CRCs recomputed) decodes to something or fails cleanly."""
    c = bitstream.unpack(neuralcodec.compress(rgb64, 50))
    rng = np.random.default_rng(0)
    for n in (0, 4, 40, 400):
        c.chunks[b"YLAT"] = rng.bytes(n)
        try:
            out = neuralcodec.decompress(bitstream.pack(c))
            assert out.size == (96, 64)
        except DecodeError:
            pass


def test_truncated_files_are_refused(rgb64):
    data = neuralcodec.compress(rgb64, 50)
    for n in range(0, len(data), max(1, len(data) // 40)):
        with pytest.raises(DecodeError):
            neuralcodec.decompress(data[:n])
    assert api.info(data)["bytes"] == len(data)


def test_library_errors_share_one_base_and_name_no_flags(tmp_path):
    """Every error the library raises on purpose is a NeuralcodecError (and still a ValueError); messages do not
    name command-line flags, the CLI adds those hints from the error's reason."""
    from neuralcodec import errors
    from neuralcodec.cli.batch import with_hint
    from neuralcodec.evaluation.evaluate import EvaluationError, evaluate

    data = neuralcodec.compress(photo(40, 56, 1), 30)
    with pytest.raises(neuralcodec.NeuralcodecError) as e:
        neuralcodec.decompress(data, max_pixels=100)
    assert isinstance(e.value, DecodeError) and isinstance(e.value, ValueError)
    assert e.value.reason == errors.PIXEL_LIMIT and "--" not in str(e.value)
    assert with_hint(e.value).endswith("(--max-pixels raises the limit)")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvaluationError, match="no lossless images"):
        evaluate(tmp_path / "empty", tmp_path / "out", [50.0], [], [], None)


def test_settings_are_typed_checked_once_and_travel_whole(rgb64, tmp_path):
    """One settings object per direction: checked when made (the field named), usable as keywords or whole,
    picklable for -j worker processes, and the same file either way."""
    import pickle

    import neuralcodec
    from neuralcodec import DecodeSettings, EncodeSettings

    for bad, field in [({"quality": 101}, "quality"), ({"quality": "high"}, "quality"), ({"effort": -1}, "effort"),
                       ({"effort": 1.5}, "effort"), ({"effort": 10}, "effort"), ({"precision": "fp8"}, "precision"), ({"tile": 0}, "tile"),
                       ({"device": "tpu"}, "device")]:
        with pytest.raises(ValueError, match=field):
            EncodeSettings(**bad)
    with pytest.raises(ValueError, match="perceptual"):
        DecodeSettings(perceptual=True, weights="flagship")
    with pytest.raises(TypeError, match="EncodeSettings"):
        neuralcodec.compress(rgb64, settings=DecodeSettings())
    s = EncodeSettings(quality=30, device="cpu")
    assert pickle.loads(pickle.dumps(s)) == s
    data = neuralcodec.compress(rgb64, settings=s)
    assert data == neuralcodec.compress(rgb64, 30, device="cpu")
    assert neuralcodec.compress(rgb64, settings=s, quality=70) == neuralcodec.compress(rgb64, 70, device="cpu")
    img = neuralcodec.decompress(data, settings=DecodeSettings(device="cpu"))
    assert np.array_equal(np.asarray(img), np.asarray(neuralcodec.decompress(data)))
