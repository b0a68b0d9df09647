"""Which weights ship, by name and digest, and what their cards say (JSON beside each `.safetensors`).

Reads cards and safetensors headers only: no tensor is loaded, no torch imported. Loading, building and exporting
weights is neuralcodec.zoo.weights_io.
"""

from __future__ import annotations

import json
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"  # a source checkout: the repository's weights/
DEFAULT_WEIGHTS = "flagship"


def _weights_dir() -> Path:
    try:  # installed: the package `neuralcodec.weights`
        import neuralcodec.weights as w

        return Path(w.__file__).resolve().parent
    except ImportError:
        return WEIGHTS_DIR


def card(name_or_path: str | Path | None) -> dict | None:
    """The card (JSON beside the weights) of a shipped name or a path, or None if there is no readable one."""
    try:
        c = json.loads(resolve(name_or_path).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    return c if isinstance(c, dict) else None


def resolve(name_or_path: str | Path | None) -> Path:
    """A shipped weights name (e.g. ``flagship``) or a path to a ``.safetensors`` file."""
    name_or_path = name_or_path or DEFAULT_WEIGHTS
    p = Path(name_or_path)
    if p.suffix == ".safetensors":
        return p
    return _weights_dir() / f"{name_or_path}.safetensors"


def shipped() -> dict[bytes, str]:
    """Digest -> name of every weights file shipped in the package (read from the cards, cheap).

    Weights that made files of an earlier release stay shipped, so those files keep decoding: superseded ones
    as decoder-only archives (see ``write_archive``), listed under the digest of the weights they decode, or
    within the weights that replaced them with a new analysis alone (``same_decoder_as``: the same decoder, so
    their files decode there exactly), listed under each such digest that no file of its own holds.
    """
    out, same = {}, {}
    for card in sorted(_weights_dir().glob("*.json")):
        try:
            c = json.loads(card.read_text())
            d = bytes.fromhex(c["decodes"] if c.get("decoder_only") else c["digest"])
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            continue
        try:  # a bad list costs only these entries (the weights refuse such files anyway: weights_io.load)
            earlier = [e for e in (bytes.fromhex(h) for h in c.get("same_decoder_as", [])) if len(e) == 32]
        except (ValueError, TypeError):
            earlier = []
        if card.with_suffix(".safetensors").is_file():
            out[d] = card.stem
            for e in earlier:  # any file with that decoder does (the first by name)
                same.setdefault(e, card.stem)
    return {**same, **out}


def archive_refusal(name: str, action: str) -> str:
    """The message refusing to ``action`` with the decoder-only archive ``name``."""
    return (f"{name} is a decoder-only archive of superseded weights: it decodes the files made with them but "
            f"cannot {action}; use the current weights (flagship)")


def is_decoder_only(name_or_path: str | Path | None) -> bool:
    """Whether the weights file is a decoder-only archive (read from its header: no tensor is loaded)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(resolve(name_or_path)), framework="numpy") as f:
            return (f.metadata() or {}).get("decoder_only") == "true"
    except (SafetensorError, OSError):
        return False  # unreadable: load() reports it


def for_model(name: str) -> str | None:
    """The shipped weights to code with for ``name``: a shipped weights name or path as it is, or a model
    (architecture) name such as ``modhp``, which picks its current shipped weights (the default file for the
    flagship's architecture; never a superseded file or a perceptual decoder). None if nothing ships."""
    if resolve(name).is_file():
        return name
    cards = {}
    for card in sorted(_weights_dir().glob("*.json")):
        try:
            c = json.loads(card.read_text())
        except (ValueError, OSError):
            continue
        if isinstance(c, dict) and card.with_suffix(".safetensors").is_file():
            cards[card.stem] = c
    if cards.get(DEFAULT_WEIGHTS, {}).get("arch") == name:
        return DEFAULT_WEIGHTS
    current = [stem for stem, c in cards.items()
               if c.get("arch") == name and not c.get("superseded_by") and not c.get("decodes")]
    return current[0] if len(current) == 1 else None


def perceptual_for(digest: bytes) -> str | None:
    """The shipped decoder-only fine-tune (``--perceptual``) of the weights with ``digest``, if any."""
    for card in sorted(_weights_dir().glob("*.json")):
        try:
            c = json.loads(card.read_text())
            if c.get("decodes") == digest.hex() and not c.get("decoder_only"):
                return card.stem
        except (ValueError, OSError, AttributeError):
            continue
    return None
