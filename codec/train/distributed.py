"""Training in several processes: ``torchrun`` starts one process (a rank) per GPU, or several on the CPU, and
:func:`neuralcodec.train.loop.train` runs in each under DistributedDataParallel (NCCL on GPUs, gloo on CPUs).

Everything that knows about the other ranks lives here; with ``WORLD_SIZE`` unset or 1 a :class:`Ranks` is a
single process whose every method is a no-op (no process group, no wrapper), so a run is exactly what it was.

- ``recipe.batch`` is the global batch: each rank draws ``batch // world`` samples from its own data stream
  (its own numpy generator) and DDP averages the gradients, so a run's learning dynamics do not depend on the
  number of ranks; ``recipe.threads`` is the machine's thread budget, shared by the ranks on it.
- Weights, optimizer states and the weight average stay identical on every rank (the same averaged gradients
  go through the same clipping and Adam steps), so rank 0 alone writes the checkpoint, the log and the output.
- The entropy bottleneck's ``.quantiles`` get no gradient from the main loss (a separate optimizer fits them to
  the aux loss, which reads no data): DDP ignores them, and every checkpoint checks that all ranks still agree.
- Whatever one rank alone can see (a signal, its clock, a non-finite loss) is agreed on by all at the same step
  (:meth:`Ranks.agree`): a rank that stopped early would leave the others waiting in a collective forever.

How to run it: docs/scaling.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from neuralcodec.train.loop import TrainingError


def local_batch(batch: int, world: int) -> int:
    """Each rank's share of the global ``batch`` (a TrainingError unless the ranks can share it evenly)."""
    if batch % world:
        raise TrainingError(f"the recipe's batch of {batch} cannot be shared evenly by {world} processes: "
                            f"choose a batch that is a multiple of the number of processes (it is the global "
                            f"batch; each process draws batch / processes samples)")
    return batch // world


@dataclass
class Ranks:
    """This process's place among the training processes (one, by default) and the collectives between them."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    local_world: int = 1  # processes on this machine (they share its threads and GPUs)
    device: str | None = None  # where this rank trains; None: the single process's choice (cuda if present)
    started: bool = False  # a process group is up (start()) and the methods below talk to the other ranks

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Ranks":
        """What torchrun says (WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE); one process without them."""
        try:
            world = int(environ.get("WORLD_SIZE", "1"))
            rank = int(environ.get("RANK", "0"))
            local_rank = int(environ.get("LOCAL_RANK", str(rank)))
            local_world = int(environ.get("LOCAL_WORLD_SIZE", str(world)))
        except ValueError as e:
            raise TrainingError(f"unreadable torchrun environment: {e}") from None
        if world <= 1:
            return cls()
        if not (0 <= rank < world and 0 <= local_rank < local_world <= world):
            raise TrainingError(f"inconsistent torchrun environment: RANK {rank}, WORLD_SIZE {world}, "
                                f"LOCAL_RANK {local_rank}, LOCAL_WORLD_SIZE {local_world}")
        return cls(world=world, rank=rank, local_rank=local_rank, local_world=local_world)

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes files and speaks."""
        return self.rank == 0

    def threads(self, budget: int) -> int:
        """This rank's share of the machine's ``budget`` of threads (at least one)."""
        return max(1, budget // self.local_world)

    # -- the process group ---------------------------------------------------------------------------------
    def start(self, init_method: str | None = None) -> None:
        """Join the process group: NCCL, each rank on GPU ``LOCAL_RANK``, where CUDA is present; else gloo on
        the CPU. ``init_method`` defaults to torchrun's environment (MASTER_ADDR, MASTER_PORT)."""
        import torch
        import torch.distributed as dist

        if torch.cuda.is_available():
            if self.local_rank >= torch.cuda.device_count():
                raise TrainingError(f"{self.local_world} processes on this machine but {torch.cuda.device_count()} "
                                    f"GPUs: start at most one process per GPU (torchrun --nproc-per-node)")
            torch.cuda.set_device(self.local_rank)
            backend, self.device = "nccl", f"cuda:{self.local_rank}"
        else:
            backend, self.device = "gloo", "cpu"
        dist.init_process_group(backend, init_method=init_method, rank=self.rank, world_size=self.world)
        self.started = True

    def close(self) -> None:
        if self.started:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.started = False

    # -- the model ---------------------------------------------------------------------------------------
    def wrap(self, model):
        """What the training step calls for the model's forward pass: ``model`` itself, or, in a process group,
        its DistributedDataParallel wrapper, whose backward averages the gradients over the ranks. The
        ``.quantiles`` (the aux optimizer's: no gradient from the main loss) are left out of it. Parameters that
        do not require a gradient when it is wrapped never get one averaged: wrap again after changing that."""
        if not self.started:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        DDP._set_params_and_buffers_to_ignore_for_model(
            model, [n for n, _ in model.named_parameters() if n.endswith(".quantiles")])
        cuda = self.device is not None and self.device.startswith("cuda")
        # the buffers are constants while training (bounds, coding tables): no broadcast before every step
        # (torch 2.14 renamed the option; the older name warns there)
        import inspect

        quiet = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
                 else {"broadcast_buffers": False})
        return DDP(model, device_ids=[self.local_rank] if cuda else None, **quiet)

    def broadcast(self, module) -> None:
        """Give every rank rank 0's parameters and buffers of ``module`` (one trained without DDP)."""
        if self.started:
            import torch.distributed as dist

            for v in [*module.parameters(), *module.buffers()]:
                dist.broadcast(v.data, 0)

    def average_gradients(self, params: Iterable) -> None:
        """Average the gradients of ``params`` over the ranks (for a network trained without DDP: the
        discriminator, whose two forward passes a step would confuse DDP's bookkeeping)."""
        if not self.started:
            return
        import torch
        import torch.distributed as dist

        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads]).div_(self.world)
            dist.all_reduce(flat)
            offset = 0
            for g in grads:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()

    def in_sync(self, tensors: Iterable) -> bool:
        """Whether every rank holds the same values of ``tensors`` (compares one float64 sum per tensor)."""
        if not self.started:
            return True
        import torch
        import torch.distributed as dist

        sums = torch.stack([t.detach().double().sum() for t in tensors]).nan_to_num().to(self.device)
        hi, lo = sums.clone(), sums.clone()
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        return bool(torch.equal(hi, lo))

    # -- agreeing, gathering -----------------------------------------------------------------------------
    def agree(self, *values: float) -> list[float]:
        """The largest of each value over the ranks (flags: any rank's; clocks: the latest), so that every
        rank takes the same decision at the same step. One process: the values themselves."""
        if not self.started:
            return [float(v) for v in values]
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def gather(self, obj: Any) -> list:
        """Every rank's ``obj`` (picklable), in rank order; one process: ``[obj]``."""
        if not self.started:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    # -- data streams ------------------------------------------------------------------------------------
    def rng(self, seed: int, step: int = 0, state: Mapping | None = None) -> np.random.Generator:
        """This rank's data stream: its state in checkpoint ``state`` where it has one (rank 0: "rng", as a
        single process saves it; the others: "rng_ranks"); else rank 0's is the recipe's seed, and another
        rank's is derived from (seed, rank, step) (a new run, or a resume with more ranks than saved)."""
        if self.rank == 0:
            gen = np.random.default_rng(seed)
            saved = state["rng"] if state is not None else None
        else:
            gen = np.random.default_rng(np.random.SeedSequence([seed, self.rank, step]))
            ranks = (state or {}).get("rng_ranks") or []
            saved = ranks[self.rank] if self.rank < len(ranks) else None
        if saved is not None:
            gen.bit_generator.state = saved
        return gen

    def torch_seed(self, seed: int, step: int = 0) -> None:
        """Give a rank other than 0 its own torch random stream (the rate terms' uniform noise) once the
        model is built: with the recipe's seed, every rank would draw the same noise."""
        if self.rank:
            import torch

            torch.manual_seed(int(np.random.SeedSequence([seed, self.rank, step]).generate_state(1)[0]))

    def rng_states(self, rng: np.random.Generator) -> dict:
        """Checkpoint entries of every rank's data stream: "rng" (rank 0's, what a single process saves) and,
        with several ranks, "rng_ranks" (all of them, in rank order). Every rank must call it."""
        states = self.gather(rng.bit_generator.state)
        return {"rng": states[0], **({"rng_ranks": states} if self.world > 1 else {})}
