"""Rate control: find the quality whose real file meets a size, bits-per-pixel or PSNR target.

``-q`` is continuous and the file size (and PSNR) grows with it, so the target is searched on real encodes:
a first step from a typical slope, then secant steps (regula falsi) inside the bracket found so far. It stops
within 2 % of a size or bpp target (a size target is never exceeded) or 0.1 dB of a PSNR target; an unreachable
target returns the nearest file with ``met`` False. Plain values in and out: no torch, no files.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

KINDS = ("size", "bpp", "psnr")
SIZE_TOLERANCE = 0.02  # a size target is met by [0.98 T, T]; a bpp target by [0.98 T, 1.02 T]
PSNR_TOLERANCE = 0.1  # dB
SLOPES = {"size": 0.03, "bpp": 0.03, "psnr": 0.09}  # d log(bytes)/dq and dB/dq of the flagship on photos
MAX_ENCODES = 12


class TargetError(ValueError):
    """A target that no quality meets; ``reached`` holds the nearest file."""

    def __init__(self, message: str, reached: "Reached"):
        super().__init__(message)
        self.reached = reached


@dataclass(frozen=True)
class Target:
    kind: str  # size (bytes), bpp or psnr (dB)
    value: float

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"target kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not (isinstance(self.value, (int, float)) and math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"a {self.kind} target must be a positive number, got {self.value!r}")

    def describe(self, value: float | None = None) -> str:
        v = self.value if value is None else value
        return {"size": f"{v:,.0f} bytes", "bpp": f"{v:.4f} bpp", "psnr": f"{v:.2f} dB"}[self.kind]

    def met(self, v: float) -> bool:
        if self.kind == "size":
            return (1 - SIZE_TOLERANCE) * self.value <= v <= self.value
        if self.kind == "bpp":
            return abs(v - self.value) <= SIZE_TOLERANCE * self.value
        return abs(v - self.value) <= PSNR_TOLERANCE

    def error(self, v: float) -> float:
        """Signed distance of ``v`` from the target, in the units the search steps in (log rate, dB)."""
        return math.log(max(v, 1e-9) / self.value) if self.kind != "psnr" else v - self.value


def parse_size(text: str) -> int:
    """Bytes from ``123``, ``100k``/``100K`` (x1000), ``1.5M`` (x10^6), ``64KiB``/``2MiB`` (x1024, x1024^2)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(|[kKmMgG]i?[bB]?|[bB])\s*", text)
    if not m:
        raise ValueError(f"not a size: {text!r} (bytes, or with k, M, KiB, MiB)")
    unit = m.group(2).lower().rstrip("b")
    scale = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "ki": 1024, "mi": 1024**2, "gi": 1024**3}[unit]
    n = float(m.group(1)) * scale
    if not math.isfinite(n) or n > 2**62:
        raise ValueError(f"a size target must be a finite number of bytes, got {text!r}")
    if n < 1:
        raise ValueError(f"a size target must be at least 1 byte, got {text!r}")
    return int(n)


@dataclass(frozen=True)
class Reached:
    data: bytes
    quality: float
    value: float  # what the file reached, in the target's unit
    met: bool
    encodes: int


def search(measure, target: Target, variable_rate: bool = True, start: float = 50.0) -> Reached:
    """The file of the quality meeting ``target``. ``measure(q) -> (data, value)`` encodes at quality ``q`` and
    measures it in the target's unit (bytes, bpp or dB); ``value`` must grow with ``q``."""
    tried: dict[float, tuple[bytes, float]] = {}

    def at(q: float) -> tuple[bytes, float]:
        q = round(min(100.0, max(0.0, q)), 3)
        if q not in tried:
            tried[q] = measure(q)
        return tried[q]

    def result(q: float, met: bool) -> Reached:
        return Reached(tried[q][0], q, tried[q][1], met, len(tried))

    q = start if variable_rate else 0.0
    lo = hi = None  # qualities known below / above the target
    for _ in range(MAX_ENCODES):
        data, v = at(q)
        q = round(min(100.0, max(0.0, q)), 3)
        if target.met(v):
            return result(q, True)
        if not variable_rate:
            break
        e = target.error(v)
        if e < 0:
            lo = q
        else:
            hi = q
        if lo is not None and hi is not None:
            if hi - lo < 0.01:
                break
            elo, ehi = target.error(tried[lo][1]), target.error(tried[hi][1])
            guess = lo + (hi - lo) * (-elo) / (ehi - elo) if ehi != elo else (lo + hi) / 2
            margin = 0.05 * (hi - lo)  # never on the bracket's edge: it shrinks every step
            q = min(hi - margin, max(lo + margin, guess))
        else:
            step = -e / SLOPES[target.kind]
            step = step if abs(step) >= 0.01 else (0.01 if e < 0 else -0.01)  # never the same q again
            if (e > 0 and q <= 0.0) or (e < 0 and q >= 100.0):
                break  # the range's end is still on the wrong side: unreachable
            q = min(100.0, max(0.0, q + step))
    # not met: the nearest file (for a size target, the largest one not over it, if any)
    if target.kind == "size":
        under = [k for k, (_, v) in tried.items() if v <= target.value]
        if under:
            return result(max(under, key=lambda k: tried[k][1]), False)
    return result(min(tried, key=lambda k: abs(target.error(tried[k][1]))), False)
