"""The rate selector, defined once: from the ``-q`` a user types to the gain the coder applies.

- ``quality``: 0..100, continuous, what users give (``-q``, ``compress(quality=...)``);
- ``rate``: the u16 stored in a file's header, round(quality / 100 * 65535) (docs/bitstream.md);
- ``t``: the model's rate parameter, t_min + (1 - t_min) * rate / 65535 (t_min: the model's lower end, <= 0);
- the gain: the inverse quantization step of y at t, exp(rate_gain * (t - 1/2)) in the model, and its exact
  fixed-point twin :func:`gain_fixed` wherever a probability table is chosen.

A fixed-rate model has one rate: its files store 0 and its gain is 1.
"""

from __future__ import annotations

import decimal

RATE_MAX = 65535
GAIN_BITS = 16


def rate_of_quality(quality: float) -> int:
    """Quality 0..100 (continuous) -> the stored u16 rate selector; monotonic."""
    if not 0 <= quality <= 100:
        raise ValueError(f"quality must be within 0..100, got {quality}")
    return int(round(quality / 100 * RATE_MAX))


def quality_of_rate(rate: int) -> float:
    """The stored rate selector -> quality, to 2 decimals (what `info` shows)."""
    return round(rate / RATE_MAX * 100, 2)


def t_of_rate(rate: int, t_min: float = 0.0) -> float:
    """The stored rate selector -> the model's rate t over [t_min, 1]."""
    return t_min + (1.0 - t_min) * rate / RATE_MAX


def gain_fixed(rate_gain: float | None, rate: int, t_min: float = 0.0) -> int:
    """round(2^16 * exp(rate_gain * (t - 1/2))) with t = t_min + ((1 - t_min) * rate) / 65535, in decimal
    arithmetic on the floats' exact binary values, every step correctly rounded to 34 digits.

    The model's gain(t) in fixed point; the same integer on every machine (libm's exp may differ by an ulp).
    A fixed-rate model (``rate_gain`` None) has gain 1.
    """
    if rate_gain is None:
        return 1 << GAIN_BITS
    with decimal.localcontext(decimal.Context(prec=34)):
        lo = decimal.Decimal(t_min)
        t = lo + (1 - lo) * decimal.Decimal(rate) / RATE_MAX
        x = decimal.Decimal(rate_gain) * (t - decimal.Decimal("0.5"))
        return int((x.exp() * (1 << GAIN_BITS)).to_integral_value(decimal.ROUND_HALF_EVEN))
