"""Money is integer fen. One rounding rule for the whole engine: ROUND HALF UP to the fen.

A ratio is applied as `apply_ratio(amount, Fraction)`; the fund's share is rounded half up and the
patient's share is the remainder (`amount - fund_share`), so every split sums exactly to the bill.
"""

from __future__ import annotations

from fractions import Fraction

from settlement.errors import InvalidAmount
from settlement.wire import MAX_FEN

Fen = int


def fen(value: object, *, allow_zero: bool = True, field: str = "amount") -> Fen:
    """Validate an amount in fen: a non-negative int up to `MAX_FEN` (bool and float are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(f"{field} must be a whole number of fen, got {value!r}", field=field)
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidAmount(
            f"{field} must be {'positive' if not allow_zero else 'zero or more'}: {value}", field=field
        )
    if value > MAX_FEN:
        raise InvalidAmount(f"{field} exceeds the largest amount of {MAX_FEN} fen", field=field, limit=MAX_FEN)
    return value


def ratio(value: str | int | Fraction) -> Fraction:
    """Parse a ratio from policy data ("0.85", "85%", 1, Fraction) into an exact Fraction in [0, 1]."""
    if isinstance(value, str):
        text = value.strip()
        r = Fraction(text[:-1]) / 100 if text.endswith("%") else Fraction(text)
    else:
        r = Fraction(value)
    if not 0 <= r <= 1:
        raise ValueError(f"ratio out of range [0, 1]: {value!r}")
    return r


def apply_ratio(amount: Fen, r: Fraction) -> Fen:
    """`amount * r` rounded half up to the fen (amount >= 0)."""
    num = amount * r.numerator
    q, rem = divmod(num, r.denominator)
    return q + (1 if 2 * rem >= r.denominator else 0)
