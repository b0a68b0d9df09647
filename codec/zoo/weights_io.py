"""Shipped weights: fp16 safetensors holding the network, its config and its entropy tables.

Never pickle: weights load through safetensors only. A weights file is identified by the SHA-256 digest of
its tensors (docs/bitstream.md), which every `.nic` file records; a card (JSON beside the weights) pins the
digest so a corrupted file is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuralcodec.errors import NeuralcodecError
from neuralcodec.zoo.catalog import archive_refusal, resolve

Z_MARGIN = 1.5
DERIVED_PREFIXES = ("tables.", "int.", "int8.")  # entropy tables and integer networks, derived at export
SCALE_TABLE = np.exp(np.linspace(np.log(0.11), np.log(256.0), 64)).astype(np.float32)


class WeightsError(NeuralcodecError, ValueError):
    """A weights file is missing, corrupt, or not the one expected."""


def digest(tensors: dict[str, np.ndarray]) -> bytes:
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"{name}\0{a.dtype.name}\0{'x'.join(map(str, a.shape))}\0".encode())
        h.update(a.astype(a.dtype.newbyteorder("<"), copy=False).reshape(-1).view(np.uint8))  # no copy
    return h.digest()


@dataclass
class Weights:
    path: Path
    arch: str
    config: dict
    tensors: dict[str, np.ndarray]  # network parameters (fp16), `tables.*` and `int.*` (integer priors)
    digest: bytes
    decodes: bytes | None = None  # a decoder-only fine-tune or archive: the digest of the weights whose files it decodes
    decoder_only: bool = False  # an archive of superseded weights without the analysis transforms: decodes only
    same_decoder_as: tuple[bytes, ...] = ()  # earlier weights whose every tensor a decoder reads is this file's (a new
    # analysis alone: `export --prior-from`): their files decode here to the same latents and pixels

    def decodes_files_of(self) -> tuple[bytes, ...]:
        """The digests of the weights whose files this file decodes exactly: its own (full weights), the source of
        an archive or the base of a fine-tune (``decodes``), and ``same_decoder_as``."""
        own = () if self.decoder_only else (self.digest,)
        return own + ((self.decodes,) if self.decodes is not None else ()) + self.same_decoder_as

    def tables(self, prefix: str):
        from neuralcodec.coding.entropy import CountTables

        t = self.tensors
        return CountTables(t[f"tables.{prefix}_counts"], t[f"tables.{prefix}_lengths"],
                           t[f"tables.{prefix}_offsets"])


def load(name_or_path: str | Path | None = None) -> Weights:
    from safetensors import SafetensorError, safe_open

    path = resolve(name_or_path)
    if not path.is_file():
        raise WeightsError(f"weights not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        arch, config = meta["arch"], json.loads(meta["config"])
        decodes = bytes.fromhex(meta["decodes"]) if "decodes" in meta else None
        decoder_only = meta.get("decoder_only") == "true"
        if (decoder_only and decodes is None) or (decodes is not None and len(decodes) != 32):
            raise ValueError("decodes must name a 32-byte digest")
        same = tuple(bytes.fromhex(h) for h in meta.get("same_decoder_as", "").split(",") if h)
        if any(len(d) != 32 for d in same):
            raise ValueError("same_decoder_as must name 32-byte digests")
    except (SafetensorError, KeyError, ValueError, OSError) as e:
        raise WeightsError(f"{path}: not a valid neuralcodec weights file ({e})") from None
    d = digest(tensors)
    card = path.with_suffix(".json")
    if card.is_file():
        expected = json.loads(card.read_text()).get("digest")
        if expected and expected != d.hex():
            raise WeightsError(f"{path}: digest {d.hex()[:16]} differs from its card's {expected[:16]}: "
                               "the file is corrupt or not the shipped one")
    return Weights(path, arch, config, tensors, d, decodes, decoder_only, same)


def load_state_dict(name_or_path) -> dict:
    """Network parameters of a weights file as float32 torch tensors (for training initialization)."""
    w = load(name_or_path)
    if w.decoder_only:
        raise WeightsError(archive_refusal(w.path.name, "initialize training"))
    return network_state(w)


def network_state(w: Weights) -> dict:
    """The network's parameters and buffers of ``w`` as float32 torch tensors (entropy tables left out)."""
    import torch

    from neuralcodec.coding.integer import float_parameters
    from neuralcodec.coding.integer8 import float_parameters8

    state = {k: v.astype(np.float32) for k, v in w.tensors.items()
             if not k.startswith(DERIVED_PREFIXES) and not _is_derived_buffer(k)}
    state.update(float_parameters(w.tensors, "int"))  # prior networks ship in integer form only
    state.update(float_parameters8(w.tensors))
    return {k: torch.from_numpy(v) for k, v in state.items()}


def build_model(w: Weights):
    """The coding model of ``w`` (no compressai), eval mode, parameters as stored (fp16 widened to fp32)."""
    from neuralcodec.models import build

    try:
        model = build(w.arch, **w.config, inference=True)
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{w.path}: bad config for {w.arch}: {e}") from None
    t_min = w.tensors.get("tables.rate_t_min", np.zeros(1))
    if t_min.shape != (1,) or float(t_min[0]) != model.t_min:
        raise WeightsError(f"{w.path}: its rate range (t_min) disagrees with its config")
    missing, unexpected = model.load_state_dict(network_state(w), strict=False)
    dropped = model.analysis_modules if w.decoder_only else ()
    missing = [k for k in missing if not _is_derived_buffer(k) and not k.startswith(dropped)]
    unexpected = [k for k in unexpected if not k.startswith(model.training_only)]
    if missing or unexpected:
        raise WeightsError(f"{w.path}: weights do not fit {w.arch} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if dropped:  # their modules hold no trained values: any call (any encode) is refused, not computed
        refuse = _refuse(archive_refusal(w.path.name, "encode"))
        for name, module in model.named_modules():
            if (name + ".").startswith(dropped):
                module.register_forward_pre_hook(refuse)
    return model.eval()


def _refuse(message: str):
    def hook(module, args):
        raise WeightsError(message)
    return hook


def _is_derived_buffer(name: str) -> bool:
    """compressai's CDF buffers and scale table (recomputed: we ship our own tables) and its constant bounds
    (set by the architecture). Neither is a learned value: never loaded from a file, never shipped. fp16
    would flush the tiny ones to zero (GDN's 2^-36 pedestal, the 1e-9 likelihood floor -> infinite rates)."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf in {"_quantized_cdf", "_offset", "_cdf_length", "scale_table", "bound", "pedestal", "scale_bound"}


def export(model, path: Path, card: dict | None = None, decodes: Weights | None = None,
           prior_steps: dict[str, list[float]] | None = None, prior_from: Weights | None = None) -> bytes:
    """Write ``model`` as fp16 safetensors with its entropy tables and integer prior networks; returns the
    digest. Writes a card too.

    ``decodes``: ``model`` is a decoder-only fine-tune (e.g. a GAN texture decoder) of those weights; every
    tensor outside the model's ``synthesis_modules`` must be theirs, so it decodes their files exactly.
    ``prior_steps``: prior networks to ship in the 8-bit layout (codec/coding/integer8.py), each with the input
    steps of its layers after the first (``neuralcodec.train.calibrate.prior_steps``); the others ship in int16.
    ``prior_from``: weights whose integer prior networks ship here bit for bit; everything of ``model`` but its
    analysis must be what they load as (only an analysis changed), so every file whose analysis did not change
    stays byte for byte the same but for the digest it names. The new file then records ``prior_from``'s digest
    (and those it decoded the same way) as ``same_decoder_as``: it decodes their files exactly, and ships in
    their place without an archive of them."""
    import torch
    from safetensors.numpy import save_file

    from neuralcodec.coding.entropy import gaussian_tables
    from neuralcodec.models import integer_modules
    from neuralcodec.coding.integer import IntegerStack
    from neuralcodec.coding.integer8 import Int8Stack

    model = model.cpu().eval()
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise WeightsError(f"not exported: {', '.join(bad[:3])} hold NaN or inf; training diverged")
    priors = [name for lv in model.levels for name in integer_modules(model, lv)]
    # prior networks ship as integer networks only (their float form is derived from them on load)
    integer = {}
    prior_steps = prior_steps or {}
    unknown = sorted(set(prior_steps) - set(priors))
    if unknown or (prior_steps and decodes is not None) or (prior_from is not None and (prior_steps or decodes)):
        raise WeightsError(f"no 8-bit prior for {', '.join(unknown) or 'a decoder-only fine-tune'}"
                           if not prior_from else "a prior from other weights is the only prior: no steps, no decodes")
    kept = decodes if decodes is not None else prior_from
    if prior_from is not None and (prior_from.decoder_only or prior_from.decodes is not None):
        raise WeightsError(f"{prior_from.path.name} is an archive or a decoder-only fine-tune: a new analysis goes "
                           "onto full weights")
    if prior_from is not None:  # the prior networks must be the ones theirs load as (the rest: checked below)
        theirs = build_model(prior_from).state_dict()
        ours = {k: v for k, v in model.state_dict().items() if k.startswith(tuple(f"{n}." for n in priors))}
        if not ours or any(k not in theirs or not torch.equal(v.float(), theirs[k].float()) for k, v in ours.items()):
            raise WeightsError(f"more than the analysis differs from {prior_from.path.name} (the prior): export "
                               "without --prior-from")
    for name in priors:
        base = {k: v for k, v in (kept.tensors if kept is not None else {}).items()
                if k.startswith((f"int.{name}.", f"int8.{name}."))}
        try:
            if base:  # a decoder-only fine-tune (or prior_from) keeps that prior as shipped, bit for bit
                integer.update(base)
            elif name in prior_steps:
                integer.update(Int8Stack.quantize(getattr(model, name), prior_steps[name]).tensors(f"int8.{name}"))
                integer[f"int8.{name}.steps"] = np.asarray(prior_steps[name], np.float64)
            else:
                integer.update(IntegerStack.quantize(getattr(model, name)).tensors(f"int.{name}"))
        except ValueError as e:
            raise WeightsError(f"not exported: {name} has no integer form: {e}") from None
    skip = tuple(f"{name}." for name in priors)
    tensors = {k: v.detach().cpu().numpy().astype(np.float16) for k, v in model.state_dict().items()
               if not _is_derived_buffer(k) and not k.startswith(skip)}
    bad = [k for k, v in tensors.items() if not np.isfinite(v).all()]
    if bad:
        raise WeightsError(f"not exported: {', '.join(bad[:3])} hold inf beyond float16; training diverged")
    # entropy tables from the fp16 parameters exactly as a decoder will load them
    model.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in tensors.items()}, strict=False)
    for lv in model.levels:
        if lv.kind == "factorized":
            tensors.update(_factorized_tables(getattr(model, lv.module), lv.name))
        elif lv.kind == "categorical":
            tensors.update(_categorical_tables(getattr(model, lv.module), lv.name))
    tensors.update(integer)
    if model.t_min:  # the rate range changes decoding: a tensor, so the digest covers it
        tensors["tables.rate_t_min"] = np.array([model.t_min], np.float64)
    if priors:
        y = gaussian_tables(SCALE_TABLE.astype(np.float64))
        tensors.update({"tables.y_counts": y.counts, "tables.y_lengths": y.lengths, "tables.y_offsets": y.offsets,
                        "tables.scale_table": SCALE_TABLE})
    meta = {"arch": model_arch(model), "config": json.dumps(model.config())}
    if decodes is not None:
        changed = _differing(tensors, decodes, model.synthesis_modules)
        if decodes.arch != meta["arch"] or changed:
            raise WeightsError(f"not a decoder-only fine-tune of {decodes.path.name}: {changed[:3] or decodes.arch} "
                               "differ")
        meta["decodes"] = decodes.digest.hex()
    if prior_from is not None:  # every tensor a decoder reads is theirs
        changed = _differing(tensors, prior_from, model.analysis_modules)
        if prior_from.arch != meta["arch"] or changed:
            what = changed[:3] or prior_from.arch
            raise WeightsError(f"more than the analysis differs from {prior_from.path.name} ({what}): export without "
                               "--prior-from")
        meta["same_decoder_as"] = ",".join(d.hex() for d in (prior_from.digest, *prior_from.same_decoder_as))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    d = digest(tensors)
    card = dict(card or {})
    card.update({"file": path.name, "arch": meta["arch"], "config": model.config(), "digest": d.hex(),
                 "bytes": path.stat().st_size})
    if decodes is not None:
        card["decodes"] = decodes.digest.hex()
    if prior_from is not None:
        card["same_decoder_as"] = meta["same_decoder_as"].split(",")
    path.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    return d


def write_archive(src: Weights, path: Path, card: dict | None = None) -> bytes:
    """Write ``src`` without its analysis transforms (the model's ``analysis_modules``): a decoder-only archive
    that decodes every file made with ``src`` exactly (the tensors it keeps are ``src``'s, bit for bit) and
    refuses to encode. Superseded weights ship this way, about a third smaller. Returns the new digest; the
    card (``card``, e.g. ``src``'s own) gets ``decodes`` = ``src``'s digest and ``decoder_only``."""
    from safetensors.numpy import save

    from neuralcodec.format.fileio import write_atomic
    from neuralcodec.models import architecture

    if src.decoder_only or src.decodes is not None:
        raise WeightsError(f"{src.path.name} already decodes another weights' files (a fine-tune or an archive): "
                           "only full weights can be archived")
    drop = architecture(src.arch).analysis_modules
    if not drop:
        raise WeightsError(f"model {src.arch!r} names no analysis modules: nothing to drop")
    tensors = {k: v for k, v in src.tensors.items() if not k.startswith(drop)}
    meta = {"arch": src.arch, "config": json.dumps(src.config), "decodes": src.digest.hex(), "decoder_only": "true"}
    if src.same_decoder_as:  # the same decoder: their files too
        meta["same_decoder_as"] = ",".join(d.hex() for d in src.same_decoder_as)
    path = Path(path)
    data = save(tensors, metadata=meta)
    d = digest(tensors)
    card = dict(card or {})
    card.update({"file": path.name, "arch": src.arch, "config": src.config, "digest": d.hex(),
                 "bytes": len(data), "decodes": src.digest.hex(), "decoder_only": True, "dropped": list(drop)})
    card.pop("same_decoder_as", None)  # the file's own list, not a stale one of the card passed in
    if src.same_decoder_as:
        card["same_decoder_as"] = [d.hex() for d in src.same_decoder_as]
    write_atomic(path, data)  # each file whole; the card last, so a card never names a file not yet there
    write_atomic(path.with_suffix(".json"), (json.dumps(card, indent=1) + "\n").encode())
    return d


def _differing(tensors: dict[str, np.ndarray], other: Weights, free: tuple[str, ...]) -> list[str]:
    """The names outside the prefixes ``free`` whose tensors are not ``other``'s (or only one side has)."""
    return sorted(k for k in set(tensors) | set(other.tensors) if not k.startswith(free) and (
        k not in tensors or k not in other.tensors or not np.array_equal(tensors[k], other.tensors[k])))


def model_arch(model) -> str:
    from neuralcodec.models import ARCHITECTURES

    for name, target in ARCHITECTURES.items():
        if target.endswith(":" + type(model).__name__):
            return name
    raise ValueError(f"{type(model).__name__} is not a registered architecture")


def _factorized_tables(eb, name: str) -> dict[str, np.ndarray]:
    """Per-channel count tables of a factorized prior over v = round(x - median), named after the level."""
    import torch

    from neuralcodec.coding.entropy import pmf_tables

    with torch.no_grad():
        q = eb.quantiles[:, 0, :]
        medians = q[:, 1]
        # the learned quantiles bound ~1e-9 of the mass; widen them so that escapes (32+ bits) stay rare
        minima = torch.ceil(Z_MARGIN * (medians - q[:, 0])).clamp_min(0).long() + 2
        maxima = torch.ceil(Z_MARGIN * (q[:, 2] - medians)).clamp_min(0).long() + 2
        lengths = minima + maxima + 1
        samples = torch.arange(int(lengths.max()))[None, :] - minima[:, None]
        pmf, _, _ = eb._likelihood((samples + medians[:, None])[:, None, :].float(), stop_gradient=True)
        pmf = pmf[:, 0, :].double().numpy()
    t = pmf_tables(pmf, lengths.numpy(), -minima.numpy())
    return {f"tables.{name}_counts": t.counts, f"tables.{name}_lengths": t.lengths, f"tables.{name}_offsets": t.offsets}


def _categorical_tables(prior, name: str) -> dict[str, np.ndarray]:
    """One count table per channel over the codes 0..K-1 from a learned categorical's logits (C, K)."""
    import torch

    from neuralcodec.coding.entropy import pmf_tables

    with torch.no_grad():
        pmf = torch.softmax(prior.logits.double(), 1).numpy()
    t = pmf_tables(pmf, np.full(pmf.shape[0], pmf.shape[1]), np.zeros(pmf.shape[0]))
    return {f"tables.{name}_counts": t.counts, f"tables.{name}_lengths": t.lengths, f"tables.{name}_offsets": t.offsets}
