"""Exact credit arithmetic. Amounts are `Decimal` with at most four places, never floats."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

FOUR_PLACES = Decimal("0.0001")
MAX_AMOUNT = Decimal("100000000000000")  # 1e14 credits: far above any real grant, well inside int64


def charge(unit_credits: Decimal, model_multiplier: Decimal, channel_multiplier: Decimal, images: int) -> Decimal:
    """credits_per_image × model multiplier × channel multiplier × images, half-up to 4 places."""
    exact = unit_credits * model_multiplier * channel_multiplier * images
    return exact.quantize(FOUR_PLACES, rounding=ROUND_HALF_UP)


def parse_amount(value: object, *, field: str) -> Decimal:
    """A JSON number or decimal string as an exact amount; ValueError names the problem."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"{field} must be a number or a decimal string")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{field} must be a number or a decimal string, got {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"{field} must be finite")
    if abs(amount) > MAX_AMOUNT:
        raise ValueError(f"{field} is too large")
    if amount != amount.quantize(FOUR_PLACES, rounding=ROUND_HALF_UP):
        raise ValueError(f"{field} has more than four decimal places")
    return amount.quantize(FOUR_PLACES)


def render(amount: Decimal) -> str:
    """The contract's decimal string: no exponent, no trailing zeros ("8", "0.5", "992.1234")."""
    text = format(amount.quantize(FOUR_PLACES), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
