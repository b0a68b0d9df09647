"""Training under torchrun: DistributedDataParallel over two gloo ranks on the CPU, its gradients against one
process's, a short run and its resume in one process (tiny models: seconds)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neuralcodec.cli.main import main
from neuralcodec.models import build
from neuralcodec.train.distributed import Ranks, local_batch
from neuralcodec.train.loop import Recipe, TrainingError, rd_terms, train

from conftest import photo, photo_files

CFG = {"N": 8, "M": 8, "lmbda_min": 0.0015, "lmbda_max": 0.2}
CPU_ONLY = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # gloo ranks on the CPU, even on a machine with GPUs


def _model():
    torch.manual_seed(0)  # every rank's initialization the same, as the loop's
    return build("modhp", **CFG).to(memory_format=torch.channels_last)


def _batch():
    """A fixed batch of four: rank r trains on samples 2r and 2r+1."""
    x = torch.from_numpy(np.stack([photo(64, 64, i) for i in range(4)])).permute(0, 3, 1, 2).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last), torch.tensor([0.1, 0.9, 0.4, 0.7])


def _grads(model, forward, half: int) -> dict:
    """The loop's loss on half ``half`` of the batch through ``forward``, backward; the gradients."""
    x, t = _batch()
    torch.manual_seed(100 + half)  # the same noise in the rate terms as the other side of the comparison
    model.zero_grad(set_to_none=True)
    rd_terms(model, x[2 * half:2 * half + 2], t[2 * half:2 * half + 2], forward=forward)[0].backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _rank(rank: int, world: int, store: str, out: str) -> None:
    """One rank of the spawned pair: DDP's gradients, then the helpers every step and checkpoint uses."""
    torch.set_num_threads(1)
    ranks = Ranks(world=world, rank=rank, local_rank=rank, local_world=world)
    ranks.start(f"file://{store}")
    try:
        model = _model()
        forward = ranks.wrap(model)
        _grads(model, forward, rank)  # twice through one wrapper: a parameter without a gradient (the
        res = {"all": _grads(model, forward, rank)}  # .quantiles, unless left out) would fail the second
        for n, p in model.named_parameters():  # the wake phase: a few parameters train, then all (wrapped again)
            p.requires_grad_(n.startswith("g_s."))
        forward = ranks.wrap(model)
        res["g_s"] = _grads(model, forward, rank)
        for p in model.parameters():
            p.requires_grad_(True)
        forward = None
        res["again"] = _grads(model, ranks.wrap(model), rank)
        model.zero_grad(set_to_none=True)
        model.aux_loss().backward()  # the quantiles' own loss: no data, the same on every rank
        res["aux"] = model.entropy_bottleneck.quantiles.grad.clone()
        res["agree"] = ranks.agree(rank == 1, 10.0 * rank, 0)  # a signal seen by rank 1, clocks, nothing
        res["gather"] = ranks.gather({"rank": rank})
        res["rng"] = ranks.rng_states(ranks.rng(7))
        res["in_sync"] = ranks.in_sync(model.parameters())
        with torch.no_grad():
            model.entropy_bottleneck.quantiles[0, 0, 0] += rank  # one rank's quantiles drift
        res["drifted"] = ranks.in_sync(model.parameters())
        torch.save(res, os.path.join(out, f"{rank}.pt"))
    finally:
        ranks.close()


@pytest.mark.timeout(180)
def test_two_gloo_ranks_average_the_gradients_of_their_half_batches(tmp_path):
    model = _model()  # one process, the two half-batches one after the other
    expected = {}
    for key, train_only in (("all", None), ("g_s", "g_s."), ("again", None)):
        for n, p in model.named_parameters():
            p.requires_grad_(train_only is None or n.startswith(train_only))
        expected[key] = [_grads(model, None, h) for h in range(2)]

    # forked (after compressai's import, above): spawned ranks would spend ~10 s each importing it again
    method = "fork" if "fork" in torch.multiprocessing.get_all_start_methods() else "spawn"
    torch.multiprocessing.start_processes(_rank, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2,
                                          start_method=method)
    got = [torch.load(tmp_path / f"{r}.pt", weights_only=False) for r in range(2)]
    for key, halves in expected.items():
        assert halves[0].keys() == halves[1].keys() and "entropy_bottleneck.quantiles" not in halves[0]
        assert halves[0].keys() == got[0][key].keys() == got[1][key].keys(), key
        assert not all(torch.equal(halves[0][n], halves[1][n]) for n in halves[0])  # the halves differ
        for n in halves[0]:
            mean = (halves[0][n] + halves[1][n]) / 2
            scale = mean.abs().max().item()
            for r in range(2):
                assert torch.allclose(got[r][key][n], mean, rtol=1e-5, atol=1e-6 * scale), (key, n, r)
            assert torch.equal(got[0][key][n], got[1][key][n]), (key, n)  # bit for bit the same on both ranks
    assert torch.equal(got[0]["aux"], got[1]["aux"])
    assert got[0]["agree"] == got[1]["agree"] == [1.0, 10.0, 0.0]
    assert got[0]["gather"] == got[1]["gather"] == [{"rank": 0}, {"rank": 1}]
    rng = got[0]["rng"]  # rank 0's stream where a single process keeps it; every rank's beside it
    assert rng["rng"] == np.random.default_rng(7).bit_generator.state and len(rng["rng_ranks"]) == 2
    assert rng["rng_ranks"][0] == rng["rng"] and rng["rng_ranks"][1] != rng["rng"]
    assert got[0]["in_sync"] and got[1]["in_sync"] and not got[0]["drifted"] and not got[1]["drifted"]


def test_one_process_is_left_as_it_was(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    one = Ranks.from_env()
    assert one == Ranks() and one.main and not one.started and one.threads(3) == 3
    assert Ranks.from_env({"WORLD_SIZE": "1", "RANK": "0"}) == Ranks()  # torchrun --nproc-per-node 1
    model = build("modhp", **CFG)
    assert one.wrap(model) is model and one.agree(True, 2.5) == [1.0, 2.5] and one.gather("x") == ["x"]
    assert one.in_sync(model.parameters())
    rng = one.rng(3)
    assert rng.random() == np.random.default_rng(3).random()
    assert one.rng_states(rng) == {"rng": rng.bit_generator.state}  # a single process's checkpoint, as before


def test_torchrun_environment_threads_batch_and_data_streams():
    env = {"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    r = Ranks.from_env(env)
    assert (r.world, r.rank, r.local_rank, r.local_world, r.main) == (8, 5, 1, 4, False)
    assert r.threads(16) == 4 and r.threads(2) == 1
    with pytest.raises(TrainingError, match="inconsistent"):
        Ranks.from_env({**env, "RANK": "8"})
    assert local_batch(8, 2) == 4 and local_batch(8, 8) == 1
    with pytest.raises(TrainingError, match="multiple of the number of processes"):
        local_batch(8, 3)

    # each rank its own stream: saved, or derived from (seed, rank, step) when the checkpoint has none for it
    saved = np.random.default_rng(11)
    saved.random(5)
    state = {"rng": np.random.default_rng(1).bit_generator.state}  # a single process's checkpoint
    derived = Ranks(world=2, rank=1).rng(1, 40, state)
    assert derived.random() == np.random.default_rng(np.random.SeedSequence([1, 1, 40])).random()
    assert Ranks(world=2, rank=1).rng(1, 41, state).random() != Ranks(world=2, rank=1).rng(1, 40, state).random()
    assert Ranks(world=4).rng(1, 40, state).bit_generator.state == state["rng"]  # rank 0: the "rng" it always had
    state["rng_ranks"] = [state["rng"], saved.bit_generator.state]
    assert Ranks(world=2, rank=1).rng(1, 40, state).bit_generator.state == saved.bit_generator.state
    assert Ranks(world=3, rank=2).rng(1, 40, state).random() == Ranks(world=3, rank=2).rng(1, 40).random()


def test_a_batch_the_ranks_cannot_share_is_refused_before_they_start(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    r = Recipe(model=CFG, data=str(tmp_path), batch=4, threads=1)
    with pytest.raises(TrainingError, match="batch of 4 cannot be shared evenly by 3"):
        train(r, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # ~25 s on two busy cores: deselect with -m "not slow"
@pytest.mark.timeout(240)
def test_torchrun_trains_two_ranks_and_one_process_resumes(tmp_path):
    data = photo_files(tmp_path / "data", 2, 70, 80)
    r = Recipe(model=CFG, data=str(data), crop=64, batch=4, steps=3, warmup=1, threads=2, log_every=1,
               checkpoint_minutes=100)
    recipe, run = tmp_path / "recipe.json", tmp_path / "run"
    recipe.write_text(json.dumps({k: getattr(r, k) for k in r.__dataclass_fields__}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "neuralcodec", "train", "--recipe", str(recipe), "--run-dir", str(run)]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=CPU_ONLY,
                       cwd=tmp_path, timeout=200)
    assert p.returncode == 0, p.stdout
    assert p.stdout.count("stopped at step 3;") == 1 and "2 processes, 2 samples each" in p.stdout, p.stdout
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["step"] == 3 and len(state["rng_ranks"]) == 2 and state["rng_ranks"][0] == state["rng"]
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == [1, 2, 3]  # one log, written by rank 0
    assert sorted(p.name for p in run.iterdir()) == ["last.pt", "log.jsonl", "recipe.json"]

    res = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "--run-dir", str(run), "--steps", "5"],
                             catch_exceptions=False)  # one process goes on with the whole batch
    assert res.exit_code == 0 and f"resumed {run / 'last.pt'} at step 3" in res.output, res.output
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["step"] == 5 and "rng_ranks" not in state
    assert [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]
