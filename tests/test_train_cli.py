"""The training commands as a user runs them: --minutes, resuming, --init-weights, SIGTERM, export --note,
retire -f (tiny models: seconds)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from neuralcodec.cli.main import main
from neuralcodec.train.loop import Recipe

from conftest import photo

ROOT = Path(__file__).resolve().parent.parent


def _recipe(tmp_path, **kw):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for i in range(2):
        Image.fromarray(photo(70, 80, i)).save(data / f"{i}.png")
    r = Recipe(model={"N": 8, "M": 8, "lmbda_min": 0.0015, "lmbda_max": 0.2}, data=str(data), crop=64, batch=2,
               steps=3, warmup=1, threads=1, log_every=1, checkpoint_minutes=100, **kw)
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({k: getattr(r, k) for k in r.__dataclass_fields__}))
    return path


def _steps(run):
    return [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()]


def test_train_minutes_resume_and_init_weights_from_the_command_line(tmp_path):
    recipe, run = _recipe(tmp_path, ema_decay=0.9), tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "--run-dir", str(run), "--steps", "100000",
                                  "--minutes", "0.02"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    first = _steps(run)
    assert first and first[-1] < 100000 and f"stopped at step {first[-1]}" in r.output  # the budget stopped it
    r = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "--run-dir", str(run),
                                  "--steps", str(first[-1] + 2)], catch_exceptions=False)
    assert r.exit_code == 0 and f"resumed {run / 'last.pt'} at step {first[-1]}" in r.output, r.output
    assert _steps(run) == first + [first[-1] + 1, first[-1] + 2]

    w = tmp_path / "w.safetensors"
    r = CliRunner().invoke(main, ["export", str(run), "-o", str(w), "--note", "made by a test"])
    assert r.exit_code == 0, r.output
    card = json.loads(w.with_suffix(".json").read_text())
    assert card["note"] == "made by a test" and card["steps"] == first[-1] + 2
    r = CliRunner().invoke(main, ["export", str(run), "-o", str(tmp_path / "raw.safetensors"), "--raw"])
    assert r.exit_code == 0 and "raw" in json.loads((tmp_path / "raw.json").read_text())["weights"]
    assert "moving average" in card["weights"]
    r = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "--run-dir", str(tmp_path / "fresh"),
                                  "--init-weights", str(w), "--steps", "1"], catch_exceptions=False)
    assert r.exit_code == 0 and "initialized from shipped weights" in r.output, r.output
    r = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "--run-dir", str(tmp_path / "x"),
                                  "--init-weights", str(tmp_path / "missing.safetensors")])
    assert r.exit_code == 2 and "not found" in r.output
    (tmp_path / "x").mkdir()
    r = CliRunner().invoke(main, ["export", str(tmp_path / "x"), "-o", str(tmp_path / "y.safetensors")])
    assert r.exit_code == 2 and "not a training run directory" in r.output


def test_a_slow_moving_average_starts_from_the_first_and_moves_at_its_own_rate(tmp_path):
    """recipe slow_ema_decay: a run resumed without one starts it from its average; both move with the weights."""
    import torch

    recipe, run = _recipe(tmp_path, ema_decay=0.5), tmp_path / "run"
    train = ["train", "--recipe", str(recipe), "--run-dir", str(run)]
    assert CliRunner().invoke(main, [*train, "--steps", "2"], catch_exceptions=False).exit_code == 0
    before = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert "slow_ema" not in before
    r = json.loads(recipe.read_text())
    recipe.write_text(json.dumps({**r, "slow_ema_decay": 0.9}))
    assert CliRunner().invoke(main, [*train, "--steps", "3"], catch_exceptions=False).exit_code == 0
    after = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    moved = 0.0
    for e0, e1, s1 in zip(before["ema"], after["ema"], after["slow_ema"]):
        # one step from the same start: (slow - start) = (1 - 0.9) / (1 - 0.5) * (ema - start), up to float32
        torch.testing.assert_close(s1 - e0, 0.2 * (e1 - e0), rtol=1e-3, atol=2e-6)
        moved = max(moved, float((e1 - e0).abs().max()))
    assert moved > 1e-4  # the weights moved far more than the tolerance
    # resumed with its slow average: it goes on from the saved one (p4 from the first average's own update)
    assert CliRunner().invoke(main, [*train, "--steps", "4"], catch_exceptions=False).exit_code == 0
    last = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    for e1, s1, e2, s2 in zip(after["ema"], after["slow_ema"], last["ema"], last["slow_ema"]):
        p4 = e1 + 2 * (e2 - e1)  # ema2 = ema1 + 0.5 (p4 - ema1)
        torch.testing.assert_close(s2, s1 + 0.1 * (p4 - s1), rtol=1e-3, atol=2e-6)
    # bench/experiments/soup.py --slow: a "soup" of this one run exports its slow average, and the card says so
    soup = tmp_path / "soup"
    subprocess.run([sys.executable, str(ROOT / "bench" / "experiments" / "soup.py"), str(run), "--slow", "-o",
                    str(soup)], check=True, capture_output=True)
    state = torch.load(soup / "last.pt", map_location="cpu", weights_only=False)
    assert "slow_ema" not in state and all(torch.equal(a, b) for a, b in zip(state["ema"], last["slow_ema"]))
    assert (soup / "recipe.json").read_text() == (run / "recipe.json").read_text()  # the run's, as trained
    w = tmp_path / "slow.safetensors"
    assert CliRunner().invoke(main, ["export", str(soup), "-o", str(w)]).exit_code == 0
    card = json.loads(w.with_suffix(".json").read_text())
    assert "slower exponential moving averages (decay 0.9) at steps 4" in card["weights"]


def test_sigterm_stops_training_with_a_checkpoint_of_the_last_step(tmp_path):
    """What a scheduler or `kill` does: the run stops at a step boundary and checkpoints it; a resume goes on."""
    recipe, run = _recipe(tmp_path), tmp_path / "run"
    cmd = [sys.executable, "-m", "neuralcodec", "train", "--recipe", str(recipe), "--run-dir", str(run),
           "--steps", "100000"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((run / "log.jsonl").exists() and len(_steps(run)) >= 2):
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, out
    import torch

    step = torch.load(run / "last.pt", map_location="cpu", weights_only=False)["step"]
    assert f"stopped at step {step}; checkpoint" in out and step >= 2
    assert _steps(run)[-1] <= step < 100000 and not (run / "last.tmp").exists()
    r = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "--run-dir", str(run), "--steps",
                                  str(step + 1)], catch_exceptions=False)
    assert r.exit_code == 0 and f"at step {step}" in r.output


def test_retire_force_overwrites_another_existing_output(tmp_path):
    recipe, run = _recipe(tmp_path), tmp_path / "run"
    assert CliRunner().invoke(main, ["train", "--recipe", str(recipe), "--run-dir", str(run)]).exit_code == 0
    full, out = tmp_path / "full.safetensors", tmp_path / "old.safetensors"
    assert CliRunner().invoke(main, ["export", str(run), "-o", str(full)]).exit_code == 0
    out.write_bytes(b"something else")
    r = CliRunner().invoke(main, ["retire", str(full), "-o", str(out)])
    assert r.exit_code == 2 and out.read_bytes() == b"something else"
    r = CliRunner().invoke(main, ["retire", str(full), "-o", str(out), "-f"])
    assert r.exit_code == 0, r.output
    assert json.loads(out.with_suffix(".json").read_text())["decoder_only"] is True


def test_encoder_delta_adds_the_mean_change_of_encoder_only_runs_from_one_base(tmp_path):
    """bench/experiments/encoder_delta.py: the target's analysis moves by the mean of the encoder runs' changes,
    nothing else moves; a run that did not start from --base is refused before anything is written."""
    import torch

    from neuralcodec.models import build
    from neuralcodec.zoo import weights_io

    def train(run, recipe, *extra):
        r = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "--run-dir", str(run), *extra],
                               catch_exceptions=False)
        assert r.exit_code == 0, r.output

    joint = _recipe(tmp_path, ema_decay=0.5)
    train(tmp_path / "trunk", joint)
    base, other = tmp_path / "base.safetensors", tmp_path / "other.safetensors"
    assert CliRunner().invoke(main, ["export", str(tmp_path / "trunk"), "-o", str(base)]).exit_code == 0
    train(tmp_path / "trunk", joint, "--steps", "4")
    assert CliRunner().invoke(main, ["export", str(tmp_path / "trunk"), "-o", str(other)]).exit_code == 0
    encoder = tmp_path / "encoder.json"
    encoder.write_text(json.dumps({**json.loads(joint.read_text()), "train_only": ["g_a.", "h_a.", "mod_a."]}))
    for name, seed in (("e1", 1), ("e2", 2)):
        encoder.write_text(json.dumps({**json.loads(encoder.read_text()), "seed": seed}))
        train(tmp_path / name, encoder, "--init-weights", str(base))
    train(tmp_path / "target", joint, "--init-weights", str(base))

    script = [sys.executable, str(ROOT / "bench" / "experiments" / "encoder_delta.py")]
    runs = [str(tmp_path / "target"), str(tmp_path / "e1"), str(tmp_path / "e2")]
    out = tmp_path / "out"
    p = subprocess.run([*script, *runs, "--base", str(other), "-o", str(out)], capture_output=True, text=True)
    assert p.returncode == 1 and "did not start from" in p.stderr and not out.exists()
    subprocess.run([*script, *runs, "--base", str(base), "-o", str(out)], check=True, capture_output=True)

    load = lambda run: torch.load(run / "last.pt", map_location="cpu", weights_only=False)  # noqa: E731
    target, e1, e2, got = load(tmp_path / "target"), load(tmp_path / "e1"), load(tmp_path / "e2"), load(out)
    start = weights_io.network_state(weights_io.load(base))
    recipe = json.loads(joint.read_text())
    names = [n for n, _ in build(recipe["arch"], **recipe["model"]).named_parameters()]
    moved = apart = 0
    for i, name in enumerate(names):
        if name.startswith(("g_a.", "h_a.", "mod_a.")):
            want = target["ema"][i] + ((e1["ema"][i] - start[name]) + (e2["ema"][i] - start[name])) / 2
            torch.testing.assert_close(got["ema"][i], want)
            moved += int(not torch.equal(got["ema"][i], target["ema"][i]))
            apart += int(not torch.equal(e1["ema"][i], e2["ema"][i]))  # two changes, so a mean to take
        else:
            assert torch.equal(got["ema"][i], target["ema"][i]), name
    assert moved > 0 and apart > 0
    assert "e1 at step 3 and" in got["ema_desc"] and "the mean of their changes" in got["ema_desc"]
