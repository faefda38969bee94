"""Field types shared by admin schemas: exact amounts in, decimal strings out."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

from app.billing.amounts import parse_amount, render


def _amount(value: object) -> Decimal:
    return parse_amount(value, field="amount")


def _multiplier(value: object) -> Decimal:
    parsed = parse_amount(value, field="multiplier")
    if parsed < 0:
        raise ValueError("must not be negative")
    return parsed


Amount = Annotated[Decimal, BeforeValidator(_amount), PlainSerializer(render, return_type=str)]
Multiplier = Annotated[Decimal, BeforeValidator(_multiplier), PlainSerializer(render, return_type=str)]
Credits = Annotated[Decimal, PlainSerializer(render, return_type=str)]
