"""Training, resuming, exporting and using a tiny model end to end (seconds, not minutes)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import neuralcodec
from neuralcodec import weights_io
from neuralcodec.train import Recipe, export_run, train

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
    src = weights_io.resolve(None)
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
