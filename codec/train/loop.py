"""Training of the variable-rate flagship on the CPU (or a GPU where present).

State (model, optimizers, step, RNG) lives in a run directory outside git; shipped weights are exported from
it by :func:`neuralcodec.zoo.weights_io.export`. A run resumes from its last checkpoint, or, on a fresh machine,
from shipped weights alone (fresh optimizer, short warm-up).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from neuralcodec.errors import NeuralcodecError
from neuralcodec.settings import native_cpu_bf16


class TrainingError(NeuralcodecError, ValueError):
    """Training cannot start as asked (e.g. no usable training images)."""


@dataclass
class Recipe:
    arch: str = "modhp"
    model: dict = field(default_factory=lambda: {"N": 128, "M": 192, "lmbda_min": 0.0015, "lmbda_max": 0.2})
    data: str = "../shared/data/train"
    crop: int = 128
    batch: int = 8
    lr: float = 3e-4
    lr_final: float = 3e-5
    decay_start: int = 200_000  # cosine decay from here to `steps`
    steps: int = 300_000
    warmup: int = 500
    aux_lr: float = 1e-3
    fast_lr_mult: float = 5.0  # modulation networks and the rate gain learn this much faster
    clip: float = 1.0
    weight_exponent: float = 0.5  # a sample's loss is weighted by (lambda/lambda_max)^-weight_exponent
    threads: int = 2
    seed: int = 0
    checkpoint_minutes: float = 10.0
    log_every: int = 50
    gan_weight: float = 0.0  # weight of the adversarial (hinge) loss of a patch discriminator; 0: none
    gan_start: int = 0  # step from which the adversarial loss counts (the discriminator trains from the start)
    disc_lr: float = 1e-4
    train_only: list = field(default_factory=list)  # parameter-name prefixes to train (e.g. ["g_s."]); []: all
    distortion: str = "mse"  # or "ms-ssim": R + lambda * MSSSIM_SCALE * (1 - MS-SSIM); crops of 97 px or more
    budget_minutes: float = 0.0  # > 0: a wall-clock budget; the schedule (decay, gan_start) runs on the fraction
    # of it spent, read as that fraction of `steps`, and training stops when it is spent (equal-budget pilots)
    ema_decay: float = 0.0  # > 0: keep an exponential moving average of the weights (decay per step); the
    # average is what `export` ships (the raw weights keep training at a steady rate)
    slow_ema_decay: float = 0.0  # > 0: a second, slower moving average beside it (checkpoint key "slow_ema"; a run
    # resumed without one starts it from the first average, or from the weights without one), to compare horizons
    # without a second run; `bench/experiments/soup.py --slow` exports it
    wake_from: int = 0  # > 0: y channels from this index were grown (--init-weights from a narrower model): their
    wake_steps: int = 0  # rate enters the loss with a weight ramped from 0 to 1 over the run's first wake_steps
    wake_lr: float = 0.0  # > 0: during those steps only the grown entries train, at this learning rate (the old
    # model stays exactly as it was); then everything trains at `lr` after a fresh warm-up
    precision: str = "fp32"  # "bf16": the transforms' interior layers (all but the first and last of g_a and g_s)
    # train under bfloat16 autocast (1.39x the steps per hour where the CPU has native bfloat16, slower where it has
    # not; bench/README.md); "auto": bf16 where the device computes it natively, else fp32
    low_t_share: float | None = None  # modulated models with t_min < 0: the share of samples drawn from
    # [t_min, 0) (the extended low rates); None: t uniform over [t_min, 1]
    smooth_share: float = 0.0  # the share of crops replaced by synthetic smooth content (colour gradients with
    # mild noise, `smooth_crop`): photos hold few of them, and there the synthesis draws its latent grid (issue 19)
    high_t_share: float = 0.0  # after the rule above, this share of the samples is drawn again from [0.5, 1) (the
    # upper half of [0, 1]): more steps where the top quality is furthest from its target (issue 19)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Recipe":
        return cls(**json.loads(Path(path).read_text()))


def resolve_precision(precision: str, device) -> str:
    """A recipe's ``precision`` as trained on ``device``: "fp32" or "bf16" ("auto": bf16 where the device
    computes bfloat16 natively, a CUDA device that supports it or a CPU with AVX512-BF16 or AMX, else fp32)."""
    import torch

    if precision not in ("fp32", "bf16", "auto"):
        raise TrainingError(f"precision must be fp32, bf16 or auto, not {precision!r}")
    if precision != "auto":
        return precision
    if torch.device(device).type == "cuda":  # native from Ampere (compute capability 8) on; older GPUs emulate it
        return "bf16" if torch.cuda.get_device_capability(device) >= (8, 0) else "fp32"
    return "bf16" if native_cpu_bf16() else "fp32"


def sample_t(rng: np.random.Generator, n: int, t_min: float, low_t_share: float | None = None,
             high_t_share: float = 0.0) -> np.ndarray:
    """Each sample's rate t: uniform over [t_min, 1], or with ``low_t_share`` of them uniform over [t_min, 0)
    and the rest over [0, 1] (so that extending the range down takes fewer steps from the rates above); then
    ``high_t_share`` of them replaced by draws from [0.5, 1) (0: none, and the draws are those of a run without it)."""
    if not 0 <= high_t_share <= 1:
        raise TrainingError(f"high_t_share must be within 0..1, got {high_t_share!r}")
    if low_t_share is None or t_min >= 0:
        t = t_min + (1 - t_min) * rng.random(n)
    else:
        low = rng.random(n) < low_t_share
        u = rng.random(n)
        t = np.where(low, t_min * (1 - u), u)
    if high_t_share:
        high = rng.random(n) < high_t_share
        t = np.where(high, 0.5 + 0.5 * rng.random(n), t)
    return t.astype(np.float32)


def load_corpus(root: str | os.PathLike, min_side: int) -> list[np.ndarray]:
    """Decode every training image once into RAM (uint8 HWC); the corpus is ~1.5 GB decoded."""
    from PIL import Image

    images = []
    for p in sorted(Path(root).iterdir()):
        if p.suffix.lower() not in {".jpg", ".jpeg", ".png"}:
            continue
        with Image.open(p) as im:
            a = np.asarray(im.convert("RGB"))
        if min(a.shape[:2]) >= min_side:
            images.append(a)
    if not images:
        raise TrainingError(f"no training images of at least {min_side}px in {root}")
    return images


def smooth_crop(crop: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic smooth crop (crop, crop, 3) uint8: two colours blended along a linear or radial profile, eased
    or not, plus Gaussian noise of sigma 0-3 grey levels. The colours differ by up to ~100 levels per channel
    across the crop, as skies, walls and studio backdrops do; a third change all three channels alike."""
    yy, xx = np.mgrid[0:crop, 0:crop].astype(np.float64) / crop  # float64: the same crops under numpy 1 and 2
    if rng.random() < 0.5:  # linear, any direction
        a = rng.uniform(0, 2 * np.pi)
        s = np.cos(a) * xx + np.sin(a) * yy
    else:  # radial, the centre anywhere within two crops
        cy, cx = rng.uniform(-1, 2, 2)
        s = np.hypot(yy - cy, xx - cx)
    s = (s - s.min()) / max(float(s.max() - s.min()), 1e-6)
    if rng.random() < 0.5:
        s = s * s * (3 - 2 * s)  # smoothstep: slopes that change across the crop
    c0 = rng.uniform(16, 240, 3)
    d = rng.normal(0, 40, 3) if rng.random() < 2 / 3 else np.full(3, rng.normal(0, 40))
    c1 = np.clip(c0 + d, 0, 255)
    img = c0 + (c1 - c0) * s[..., None] + rng.normal(0, rng.uniform(0, 3), (crop, crop, 3))
    return np.clip(img, 0, 255).round().astype(np.uint8)


def sample_batch(images: list[np.ndarray], crop: int, batch: int, rng: np.random.Generator,
                 smooth_share: float = 0.0) -> np.ndarray:
    """``batch`` random crops (flipped at random) of random corpus images; with ``smooth_share`` > 0, each one is
    instead a synthetic smooth crop with that probability (0 draws the same stream as before the option)."""
    if not 0 <= smooth_share <= 1:
        raise TrainingError(f"smooth_share must be within 0..1, got {smooth_share!r}")
    out = np.empty((batch, crop, crop, 3), np.uint8)
    for i in range(batch):
        if smooth_share and rng.random() < smooth_share:
            out[i] = smooth_crop(crop, rng)
            continue
        a = images[rng.integers(len(images))]
        y = rng.integers(a.shape[0] - crop + 1)
        x = rng.integers(a.shape[1] - crop + 1)
        c = a[y:y + crop, x:x + crop]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        if rng.random() < 0.5:
            c = c[::-1]
        out[i] = c
    return out


def learning_rate(r: Recipe, step: int, start: int, position: float | None = None) -> float:
    """Warm-up from ``start``, constant, then cosine decay from ``decay_start`` to ``steps``; ``position`` (a
    step count, e.g. from the spent fraction of a time budget) replaces ``step`` in the decay."""
    warm = min(1.0, (step - start + 1) / max(1, r.warmup))
    position = step if position is None else position
    if position < r.decay_start:
        return r.lr * warm
    p = min(1.0, (position - r.decay_start) / max(1, r.steps - r.decay_start))
    return warm * (r.lr_final + 0.5 * (r.lr - r.lr_final) * (1 + math.cos(math.pi * p)))


class PhaseClock:
    """Wall time per phase of the training step, summed between log lines (the run profiles itself: on the
    CPU every op is synchronous, so a phase's time is its own)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.t = time.perf_counter()

    def start(self) -> None:
        self.t = time.perf_counter()
        self.steps += 1

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.sums[phase] = self.sums.get(phase, 0.0) + now - self.t
        self.t = now

    def report(self) -> dict[str, float]:
        """Mean milliseconds per step of each phase since the last report (and "step": their sum)."""
        n = max(1, self.steps)
        out = {k: round(1000 * v / n, 1) for k, v in self.sums.items()}
        out["step"] = round(sum(out.values()), 1)
        self.sums, self.steps = {}, 0
        return out


MAX_NONFINITE = 20  # non-finite losses in a row before training gives up (skipped batches until then)
MSSSIM_SCALE = 1300.0  # compressai's pretrained tables pair MSE lambda 0.0067 with MS-SSIM lambda 8.73


def rd_loss(model, x, t, weight_exponent: float = 0.5):
    """Per-sample R + lambda*255^2*MSE, weighted so every lambda gets a similar share of the gradient
    (plus any extra term the model adds, e.g. VQ commitment); returns (loss, bpp, mse)."""
    return rd_terms(model, x, t, weight_exponent)[:3]


def rd_terms(model, x, t, weight_exponent: float = 0.5, distortion: str = "mse", forward=None):
    """:func:`rd_loss` (with ``distortion`` "mse" or "ms-ssim") and the model's output; ``forward``: what runs
    the model's forward pass instead of ``model`` itself (its DistributedDataParallel wrapper)."""
    import torch

    out = (forward or model)(x, t)
    n_px = x.shape[2] * x.shape[3]
    bits = sum(torch.log(l).flatten(1).sum(1) for l in out["likelihoods"].values()) / -math.log(2)
    bpp = bits / n_px
    mse = (out["x_hat"].clamp(0, 1) - x).pow(2).flatten(1).mean(1)
    mse_train = (out["x_hat"] - x).pow(2).flatten(1).mean(1)
    lmbda = model.lmbda(t)
    weight = (lmbda / model.lmbda_max) ** -weight_exponent
    weight = weight / weight.mean()
    if distortion == "ms-ssim":  # a 7-tap window: 128 px crops have room for the five scales
        from pytorch_msssim import ms_ssim

        d = lmbda * MSSSIM_SCALE * (1 - ms_ssim(out["x_hat"].clamp(0, 1), x, data_range=1.0, size_average=False,
                                                win_size=7))
    elif distortion == "mse":
        d = lmbda * 255**2 * mse_train
    else:
        raise ValueError(f"unknown distortion {distortion!r} (mse, ms-ssim)")
    loss = (weight * (bpp + d)).mean() + out.get("extra_loss", 0.0)
    return loss, bpp.detach(), mse.detach(), out


def train(recipe: Recipe, run_dir: Path, init_weights: str | None = None, max_minutes: float | None = None,
          progress: bool = True) -> bool:
    """Train until ``recipe.steps`` or ``max_minutes``; SIGINT/SIGTERM stop it cleanly with a checkpoint.
    Returns False when a signal stopped it (a caller running several trainings should stop too). Under
    ``torchrun`` each process trains one rank of a DistributedDataParallel run (:mod:`.distributed`)."""
    import torch

    from neuralcodec.train.distributed import Ranks, local_batch

    ranks = Ranks.from_env()
    local_batch(recipe.batch, ranks.world)  # a recipe the ranks cannot share fails before any of them starts
    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    old_threads = torch.get_num_threads()
    backends = torch.backends
    old_cuda = (backends.cudnn.benchmark, backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32)
    torch.set_num_threads(ranks.threads(recipe.threads))  # the ranks on one machine share its threads
    if torch.cuda.is_available():  # fixed input sizes: let cuDNN pick its fastest kernels; TF32 matrix products
        backends.cudnn.benchmark = backends.cuda.matmul.allow_tf32 = backends.cudnn.allow_tf32 = True
    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if ranks.world > 1:
            ranks.start()
        _train(recipe, Path(run_dir), init_weights, max_minutes, progress, stop, ranks)
        return not stop["flag"]
    finally:
        ranks.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)
        torch.set_num_threads(old_threads)
        backends.cudnn.benchmark, backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32 = old_cuda


def _train(recipe: Recipe, run_dir: Path, init_weights, max_minutes, progress, stop, ranks=None) -> None:
    import torch
    from tqdm import tqdm

    from neuralcodec.train.distributed import Ranks, local_batch
    from neuralcodec.zoo import weights_io
    from neuralcodec.models import build

    ranks = ranks or Ranks()  # rank 0 alone writes files and speaks; every rank computes the same way
    say = print if ranks.main else (lambda *a, **k: None)
    batch_size = local_batch(recipe.batch, ranks.world)
    run_dir.mkdir(parents=True, exist_ok=True)
    if ranks.main:
        (run_dir / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1))
    device = ranks.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(recipe.seed)  # the model's initialization (and so every tiny test model) is the recipe's
    model = build(recipe.arch, **recipe.model).to(device).to(memory_format=torch.channels_last)
    precision = resolve_precision(recipe.precision, device)
    if precision != "fp32":
        if not hasattr(model, "interior_dtype"):
            raise TrainingError(f"{recipe.arch} trains in float32 only (precision {recipe.precision!r})")
        model.interior_dtype = torch.bfloat16
    say(f"precision {precision}" + (f" ({recipe.precision})" if recipe.precision != precision else ""))
    named = dict(model.named_parameters())
    if recipe.train_only:  # e.g. a decoder-only fine-tune: everything else (and so every file) stays as it is
        for n, p in named.items():
            p.requires_grad_(n.startswith(tuple(recipe.train_only)))
        named = {n: p for n, p in named.items() if p.requires_grad}
    fast = set(model.fast_parameters())
    aux_params = [p for n, p in named.items() if n.endswith(".quantiles")]
    main_params = [p for n, p in named.items() if not n.endswith(".quantiles")]
    groups = [{"params": [p for n, p in named.items() if not n.endswith(".quantiles") and n not in fast], "mult": 1.0}]
    if fast & set(named):
        groups.append({"params": [named[n] for n in sorted(fast & set(named))], "mult": recipe.fast_lr_mult})
    # fused: one pass over parameters, gradients and moments instead of foreach's several (CPU from torch 2.4, and
    # CUDA; the same updates up to float rounding, the same state dict): 26 -> 9 ms of a ~360 ms step (bench/README.md)
    fused = torch.device(device).type in ("cpu", "cuda")
    try:
        opt = torch.optim.Adam(groups, lr=recipe.lr, fused=fused)
    except RuntimeError:  # a torch without the fused kernel for this device
        fused = False
        opt = torch.optim.Adam(groups, lr=recipe.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=recipe.aux_lr, fused=fused) if aux_params else None
    disc = disc_opt = None
    if recipe.gan_weight:
        from neuralcodec.models.discriminator import PatchDiscriminator

        disc = PatchDiscriminator().to(device).to(memory_format=torch.channels_last)
        disc_opt = torch.optim.Adam(disc.parameters(), lr=recipe.disc_lr, betas=(0.5, 0.9))
    ckpt = run_dir / "last.pt"
    step, start, rng, spent = 0, 0, ranks.rng(recipe.seed), 0.0  # spent: seconds of budget used
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)  # our own run state, never shipped
        missing, unexpected = model.load_state_dict(state["model"], strict=False)
        step = start = state["step"]
        spent = state.get("spent", 0.0)
        rng = ranks.rng(recipe.seed, step, state)  # each rank's own data stream
        if any(k.startswith("top.") for k in missing) and not any(k.startswith("top.") for k in state["model"]):
            model.init_top()  # top_from added to the run's recipe: the top analysis starts as the main one
        try:
            if missing or unexpected:
                raise ValueError(f"architecture changed (new {missing}, dropped {unexpected})")
            saved = [state["opt"]] + ([state["aux_opt"]] if aux_opt else [])
            for g in (g for sd in saved for g in sd["param_groups"]):  # a saved group brings its own flags (an
                g["fused"], g["foreach"] = fused, None if fused else g.get("foreach")  # older run's): this run's
                # win, set before loading so the state's step counters land where the fused kernel wants them
            opt.load_state_dict(state["opt"])
            if aux_opt:
                aux_opt.load_state_dict(state["aux_opt"])
            if disc and "disc" in state:
                disc.load_state_dict(state["disc"])
                disc_opt.load_state_dict(state["disc_opt"])
            start = step - recipe.warmup  # the optimizer's state is back: no second warm-up
            say(f"resumed {ckpt} at step {step}")
        except (ValueError, KeyError) as e:  # another recipe's optimizers (e.g. a train_only run's)
            say(f"resumed weights of {ckpt} at step {step} with a fresh optimizer: {e}")
    elif init_weights:
        init = weights_io.load_state_dict(init_weights)
        own = model.state_dict()
        no_top = not any(k.startswith("top.") for k in init)
        if any(k in own and own[k].shape != v.shape for k, v in init.items()):
            init = model.grown_state(init)  # a narrower model: grown function-preservingly (or ValueError)
            say(f"grew {init_weights} to {recipe.model}")
        missing, unexpected = model.load_state_dict(init, strict=False)
        if unexpected := [k for k in unexpected if not k.startswith(model.training_only)]:
            raise TrainingError(f"{init_weights} has parameters this recipe's model lacks ({unexpected[0]} and "
                                f"{len(unexpected) - 1} more): its config is {weights_io.load(init_weights).config}")
        if no_top and getattr(model, "top_from", None) is not None:
            model.init_top()  # a model with a top analysis from one without: it starts as the main one
            say(f"the top analysis (t >= {model.top_from}) starts as {init_weights}'s analysis")
        say(f"initialized from shipped weights {init_weights} (fresh optimizer, warm-up {recipe.warmup})")
    ema = [p.detach().clone() for p in model.parameters()] if recipe.ema_decay else None
    if ema and ckpt.exists() and "ema" in state:
        for e, v in zip(ema, state["ema"]):
            e.copy_(v)
    slow_ema = [e.detach().clone() for e in (ema or model.parameters())] if recipe.slow_ema_decay else None
    if slow_ema and ckpt.exists() and "slow_ema" in state:
        for e, v in zip(slow_ema, state["slow_ema"]):
            e.copy_(v)
    resumed = ranks.gather(step)
    if len(set(resumed)) > 1:  # e.g. a machine that does not see the run directory starts afresh
        raise TrainingError(f"the processes start from different steps ({', '.join(map(str, resumed))} by rank): "
                            f"every machine must see the same run directory {run_dir} (shared storage)")
    if disc:
        ranks.broadcast(disc)  # DDP gives the model rank 0's weights when it wraps it; the discriminator here
    ranks.torch_seed(recipe.seed, step)  # each rank its own noise in the rate terms (rank 0 keeps the recipe's)

    def save():  # every rank calls it (the ranks' data streams are gathered); rank 0 writes
        rngs = ranks.rng_states(rng)
        if not ranks.in_sync([*model.parameters(), *(disc.parameters() if disc else ())]):
            raise RuntimeError(f"the ranks' weights differ at step {step} (the .quantiles, which DDP does not "
                               f"average, or a rank that skipped a step): not saving them")
        if not ranks.main:
            return
        tmp = ckpt.with_suffix(".tmp")
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, **rngs,
                 "spent": spent + time.time() - t0}
        if aux_opt:
            state["aux_opt"] = aux_opt.state_dict()
        if ema:
            state["ema"] = ema
        if slow_ema:
            state["slow_ema"] = slow_ema
        if disc:
            state.update(disc=disc.state_dict(), disc_opt=disc_opt.state_dict())
        torch.save(state, tmp)
        os.replace(tmp, ckpt)

    images = load_corpus(recipe.data, recipe.crop)
    world = f" ({ranks.world} processes, {batch_size} samples each per step)" if ranks.world > 1 else ""
    say(f"{len(images)} training images, device {device}{world}, {sum(p.numel() for p in main_params)} parameters")
    log = open(run_dir / "log.jsonl", "a") if ranks.main else None
    t0 = time.time()
    last_ckpt = 0.0  # seconds since t0
    def fresh_acc():
        return {"loss": [], "bpp": [[] for _ in range(4)], "psnr": [[] for _ in range(4)],
                "woken": [[] for _ in range(4)]}

    acc = fresh_acc()
    params = list(model.parameters())
    clock = PhaseClock()
    bar = tqdm(total=recipe.steps, initial=step, disable=not (progress and ranks.main), smoothing=0.05)
    model.train()
    t_min = model.t_min  # the modulated models sample t over [t_min, 1]; others ignore it
    nonfinite = 0
    waking = None  # the wake phase: only the grown entries train (gradient masks), with their own optimizer
    if recipe.wake_from and recipe.wake_lr and step < recipe.wake_steps:
        masks = model.grown_entries(recipe.wake_from)
        for n, p in named.items():
            p.requires_grad_(n in masks or n.endswith(".quantiles"))
        hooks = [named[n].register_hook(lambda g, m=m.to(device): g * m) for n, m in masks.items()]
        waking = {"opt": torch.optim.Adam([named[n] for n in masks], lr=recipe.wake_lr), "hooks": hooks}
        say(f"waking the grown channels: {sum(int(m.sum()) for m in masks.values())} entries train at "
            f"lr {recipe.wake_lr} until step {recipe.wake_steps}")
    forward = ranks.wrap(model)  # after the wake phase chose what trains: DDP averages only those gradients
    while recipe.budget_minutes or step < recipe.steps:
        # any rank's signal, and the latest rank's clock, decide for all at the same step (they must stay in step)
        halt, now = ranks.agree(stop["flag"], time.time() - t0)
        if halt:
            stop["flag"] = True
            break
        if max_minutes and now > 60 * max_minutes:
            break
        position = None
        if recipe.budget_minutes:
            frac = (spent + now) / (60 * recipe.budget_minutes)
            if frac >= 1:
                break
            position = frac * recipe.steps
        if now - last_ckpt > 60 * recipe.checkpoint_minutes:  # the last step's state, before this one starts
            save()
            last_ckpt = now
        if waking and step >= recipe.wake_steps:  # awake: everything trains, after a fresh warm-up
            for h in waking["hooks"]:
                h.remove()
            for n, p in named.items():
                p.requires_grad_(True)
            waking, start = None, step
            forward = None
            forward = ranks.wrap(model)  # DDP again, now over every parameter that trains
        active = waking["opt"] if waking else opt
        if waking:
            for g in active.param_groups:
                g["lr"] = recipe.wake_lr * min(1.0, (step - start + 1) / max(1, recipe.warmup))
        else:
            for g in opt.param_groups:
                g["lr"] = learning_rate(recipe, step, start, position) * g["mult"]
        clock.start()
        batch = sample_batch(images, recipe.crop, batch_size, rng, recipe.smooth_share)
        x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float().div_(255)
        x = x.contiguous(memory_format=torch.channels_last)
        t = torch.from_numpy(sample_t(rng, batch_size, t_min, recipe.low_t_share, recipe.high_t_share)).to(device)
        if recipe.wake_from:
            model.wake = (recipe.wake_from, step / recipe.wake_steps) if step < recipe.wake_steps else None
        clock.lap("data")
        loss, bpp, mse, out = rd_terms(model, x, t, recipe.weight_exponent, recipe.distortion, forward=forward)
        clock.lap("forward")
        if disc and (step if position is None else position) >= recipe.gan_start:  # hinge generator loss: make the discriminator call x_hat real
            adv = -disc(out["x_hat"]).mean()
            loss = loss + recipe.gan_weight * adv
            acc.setdefault("adv", []).append(adv.item())
        active.zero_grad(set_to_none=True)
        loss.backward()
        clock.lap("backward")
        norm = torch.nn.utils.clip_grad_norm_(main_params, recipe.clip)  # averaged gradients: the same on all ranks
        bad, = ranks.agree(not (torch.isfinite(loss) and torch.isfinite(norm)))  # the loss is each rank's own
        if bad:  # a diverging batch: skip it, keep the weights
            nonfinite += 1
            if nonfinite >= MAX_NONFINITE:
                save()
                raise RuntimeError(f"training diverged: {nonfinite} non-finite losses or gradients in a row at step "
                                   f"{step}; lower the learning rate")
            continue
        nonfinite = 0
        active.step()
        clock.lap("clip+adam")
        if ema:
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - recipe.ema_decay)
        if slow_ema:
            torch._foreach_lerp_(slow_ema, [p.detach() for p in params], 1 - recipe.slow_ema_decay)
        if ema or slow_ema:
            clock.lap("ema")
        if disc:
            d_loss = (torch.relu(1 - disc(x)).mean() + torch.relu(1 + disc(out["x_hat"].detach())).mean())
            disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            ranks.average_gradients(disc.parameters())
            disc_opt.step()
            acc.setdefault("disc", []).append(d_loss.item())
        aux = model.aux_loss() if aux_opt else torch.zeros(())
        if aux_opt:
            aux_opt.zero_grad(set_to_none=True)
            aux.backward()
            aux_opt.step()
        clock.lap("aux")
        step += 1
        bar.update(1)
        acc["loss"].append(loss.item())
        woken = [None] * len(t)
        if recipe.wake_from:  # do the grown channels come alive? the share of their coded symbols that are not 0
            woken = (out["y_symbols"][:, recipe.wake_from:].abs() > 0.5).flatten(1).float().mean(1).tolist()
        for ti, b, m, w in zip(t.tolist(), bpp.tolist(), mse.tolist(), woken):
            k = min(3, int((ti - t_min) / (1 - t_min) * 4))
            acc["bpp"][k].append(b)
            acc["psnr"][k].append(-10 * math.log10(max(m, 1e-10)))
            if w is not None:
                acc["woken"][k].append(w)
        if step % recipe.log_every == 0:
            acc = merged(ranks.gather(acc))  # every rank's samples
            rec = {"step": step, "time": round(time.time() - t0, 1), "lr": active.param_groups[0]["lr"],
                   "loss": float(np.mean(acc["loss"])), "aux": aux.item(),
                   "rate_gain": None if model.rate_gain_value() is None else round(model.rate_gain_value(), 4),
                   "bpp_by_t_quarter": [round(float(np.mean(v)), 4) if v else None for v in acc["bpp"]],
                   "psnr_by_t_quarter": [round(float(np.mean(v)), 2) if v else None for v in acc["psnr"]]}
            rec.update({k: round(float(np.mean(acc[k])), 4) for k in ("adv", "disc") if acc.get(k)})
            rec["ms_per_phase"] = clock.report()
            if recipe.wake_from:
                rec["grown_nonzero_by_t_quarter"] = [round(float(np.mean(v)), 4) if v else None for v in acc["woken"]]
            if log:
                log.write(json.dumps(rec) + "\n")
                log.flush()
            bar.set_postfix(loss=f"{rec['loss']:.3f}", bpp=rec["bpp_by_t_quarter"][2], psnr=rec["psnr_by_t_quarter"][2])
            acc = fresh_acc()
        clock.lap("bookkeeping")
    save()
    bar.close()
    say(f"stopped at step {step}; checkpoint {ckpt}")


def merged(accs: list[dict]) -> dict:
    """The training log's sample lists of several ranks as one (the first, extended by the others)."""
    out = accs[0]
    for acc in accs[1:]:
        for k, v in acc.items():
            if k in ("bpp", "psnr", "woken"):  # one list per quarter of the rate range
                for mine, theirs in zip(out[k], v):
                    mine.extend(theirs)
            else:
                out.setdefault(k, []).extend(v)
    return out


def default_recipe(arch: str = "modhp") -> Path:
    """The shipped recipe of ``arch`` (the flagship's is ``flagship.json``)."""
    return Path(__file__).resolve().parent / "recipes" / f"{'flagship' if arch == 'modhp' else arch}.json"


def export_run(run_dir: Path, output: Path, note: str = "", decodes: str | None = None, raw: bool = False,
               prior_bits: int = 16, calibration: Path | None = None, prior_from: str | None = None) -> bytes:
    """Export ``run_dir``'s last checkpoint as fp16 safetensors plus a card with its recipe and progress;
    ``decodes``: the weights whose files this decoder-only fine-tune decodes (see weights_io.export); ``raw``:
    the last step's weights instead of their moving average (what ships), for comparing the two;
    ``prior_bits`` 8: the prior in the 8-bit layout, its steps fitted on ``calibration``'s images (default: the
    recipe's training data; ``neuralcodec.train.calibrate``), or ``prior_from``: those weights' prior, bit for bit (weights_io.export)."""
    import torch

    from neuralcodec.zoo import weights_io
    from neuralcodec.models import build

    recipe = Recipe.load(run_dir / "recipe.json")
    state = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)  # our own run state
    model = build(recipe.arch, **recipe.model)
    model.load_state_dict(state["model"])
    card = {"recipe": asdict(recipe), "steps": state["step"], "note": note}
    if "ema" in state and not raw:  # ship the moving average, not the last step's weights
        with torch.no_grad():
            for p, e in zip(model.parameters(), state["ema"]):
                p.copy_(e)
        card["weights"] = state.get("ema_desc", f"exponential moving average, decay {recipe.ema_decay}")  # a soup's own
    elif "ema" in state:
        card["weights"] = "raw: the last step's weights (not their moving average)"
    log = run_dir / "log.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    if lines:  # each resumed segment restarts its clock: add up the segments' last times
        total, last = 0.0, 0.0
        for line in lines:
            t = json.loads(line)["time"]
            if t < last:
                total += last
            last = t
        card["train_wall_seconds"] = round(total + last)
        card["train_log_tail"] = json.loads(lines[-1])
    steps = None
    if prior_bits == 8 and decodes:
        raise TrainingError("a decoder-only fine-tune keeps its base's prior: no --prior-bits")
    if prior_from and (prior_bits != 16 or calibration or decodes):
        raise TrainingError("a prior from other weights is shipped as it is: no --prior-bits, --calibration or --decodes")
    if prior_from:
        kept = weights_io.load(prior_from)
        card["prior"] = {"from": f"{kept.path.name} ({kept.digest.hex()[:16]}), bit for bit"}
    elif prior_bits == 8:
        from neuralcodec.train import calibrate

        images = calibrate.image_paths(calibration or recipe.data, calibrate.IMAGES)
        steps = calibrate.prior_steps(model, images)
        card["prior"] = {"bits": 8, "steps": steps, "calibration": f"{len(images)} images of {calibration or recipe.data}, "
                         f"{calibrate.PERCENTILE}th percentile of each layer's activations"}
    elif prior_bits != 16:
        raise TrainingError(f"a prior has 16 or 8 bits, not {prior_bits}")
    return weights_io.export(model, Path(output), card, decodes=weights_io.load(decodes) if decodes else None,
                             prior_steps=steps, prior_from=kept if prior_from else None)
