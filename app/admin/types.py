"""Field types shared by admin schemas: exact amounts in, decimal strings out; text a database can
store; instants in UTC; integers a database column can hold."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer

from app.billing.amounts import parse_amount, render


def _amount(value: object) -> Decimal:
    return parse_amount(value, field="amount")


def _multiplier(value: object) -> Decimal:
    parsed = parse_amount(value, field="multiplier")
    if parsed < 0:
        raise ValueError("must not be negative")
    return parsed


def _storable(value: str) -> str:
    # PostgreSQL refuses NUL in text (a 500 after validation); SQLite would store it.
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (\\u0000)")
    return value


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # naive means UTC
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 and 0001-01-01T00:00+01:00 have no UTC instant
        raise ValueError("is out of range once converted to UTC") from None


Text = Annotated[str, AfterValidator(_storable)]
Instant = Annotated[datetime, AfterValidator(_utc)]  # timezone-aware UTC; naive input means UTC
# Every integer an admin sends gets an upper bound: counts and limits live in 32-bit INTEGER
# columns, and an unbounded value was an OverflowError on SQLite or a DataError on PostgreSQL (500).
MAX_CONCURRENCY = 100_000
MAX_RPM = 1_000_000
RowId = Annotated[int, Field(ge=1, le=2**63 - 1)]  # a 64-bit row id, e.g. a pagination cursor

Amount = Annotated[Decimal, BeforeValidator(_amount), PlainSerializer(render, return_type=str)]
Multiplier = Annotated[Decimal, BeforeValidator(_multiplier), PlainSerializer(render, return_type=str)]
Credits = Annotated[Decimal, PlainSerializer(render, return_type=str)]
