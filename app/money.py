"""Exact money: integer nano-dollars in the warehouse, `Decimal` at the edges.

1 USD = 10**9 nano-USD. Conversions never touch floats; rounding is half-even and happens once,
when a catalog price (a Decimal with more digits) becomes a stored amount.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal

NANOS_PER_USD = 10**9
_NANO = Decimal(1).scaleb(-9)


def usd_to_nanos(amount: Decimal) -> int:
    return int((amount * NANOS_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


def nanos_to_usd(nanos: int) -> Decimal:
    return (Decimal(nanos) / NANOS_PER_USD).quantize(_NANO)


def format_usd(amount: Decimal) -> str:
    """The decimal string used in JSON/CSV output: fixed point, 9 decimals, never exponent."""
    return f"{amount.quantize(_NANO, rounding=ROUND_HALF_EVEN):f}"


def per_thousand(cost_nanos: int, requests: int) -> Decimal | None:
    """1000 × cost / requests, exact to the nano-dollar (None when there are no requests)."""
    if requests <= 0:
        return None
    return (Decimal(cost_nanos) * 1000 / requests / NANOS_PER_USD).quantize(
        _NANO, rounding=ROUND_HALF_EVEN
    )


def split_exact(total: int, weights: Sequence[int]) -> list[int]:
    """`total` (integer units, either sign) in parts proportional to `weights` (whole numbers,
    0 or more), adding up to `total` exactly: each part is its floored share, and the units
    left over go one each to the largest remainders (ties to the earliest). All-zero weights
    share equally. Exact integer arithmetic: no float, no Decimal rounding."""
    if not weights:
        if total:
            raise ValueError("nothing to split a non-zero total over")
        return []
    if any(w < 0 for w in weights):
        raise ValueError("weights must be 0 or more")
    if total < 0:
        return [-part for part in split_exact(-total, weights)]
    whole = sum(weights)
    if whole == 0:
        weights, whole = [1] * len(weights), len(weights)
    parts = [total * w // whole for w in weights]
    left = total - sum(parts)
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in by_remainder[:left]:
        parts[i] += 1
    return parts
