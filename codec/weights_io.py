"""Shipped weights: fp16 safetensors with their config and entropy tables, identified by digest."""
from __future__ import annotations


def load_state_dict(path):
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(str(path)).items() if not k.startswith("tables.")}
