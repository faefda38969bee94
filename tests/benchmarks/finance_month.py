"""A month of traffic for the finance benchmark (tests/benchmarks/finance.py), written straight
into the tables the way the gateway stores it.

Going through the gateway would take hours for a million requests, and the reports and exports
only read the tables, so the rows are generated here and bulk-loaded: COPY on PostgreSQL,
executemany in large transactions on SQLite. Values are encoded as the column types store them
(app/db: `Fixed4` is an integer count of 1/10,000; `UTCDateTime` is a timestamptz on PostgreSQL
and "YYYY-MM-DD HH:MM:SS.ffffff" UTC text on SQLite, which the range filters compare as text).
`check_encoding` holds this encoding against SQLAlchemy's own bind processing before anything is
loaded, so a change in app/db fails loudly instead of silently moving rows out of a range.

The traffic: ~20 accounts of very different sizes, 50 keys, the 7 default models on 4 channels
(two of them failover pairs), mostly succeeded requests with some failed, filtered and expired
ones, ~1.1 upstream attempts per request (failovers, timeouts that may be billed, each with its
upstream cost), one ledger charge per succeeded request and top-up grants. Deterministic: the
same seed gives the same rows.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import asyncpg
import orjson
from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import asyncpg as postgres_dialect
from sqlalchemy.dialects.sqlite import aiosqlite as sqlite_dialect
from sqlalchemy.engine import Dialect

from app.billing.models import Account, LedgerEntry, UpstreamAttempt, UsageRecord
from app.catalog.models import Channel
from app.db import SCALE, Database
from app.keys.models import ApiKey

USAGE_COLUMNS = (
    "id", "account_id", "key_id", "endpoint", "model", "status", "hold_credits", "unit_credits",
    "model_multiplier", "images_requested", "upstream_model", "channel_id", "channel_name", "provider",
    "channel_multiplier", "images_delivered", "credits", "attempts", "channels_tried", "latency_ms", "error_code",
    "user", "client_request_id", "metadata", "created_at", "completed_at", "hold_until", "account_budget_window",
    "key_budget_window",
)  # fmt: skip
ATTEMPT_COLUMNS = (
    "id", "request_id", "account_id", "n", "channel_id", "channel_name", "provider", "upstream_model", "started_at",
    "latency_ms", "outcome", "http_status", "error_code", "error", "images", "possibly_billed", "upstream_cost",
)  # fmt: skip
LEDGER_COLUMNS = (
    "id", "account_id", "kind", "amount", "balance_after", "request_id", "note", "actor", "created_at",
)  # fmt: skip
TABLES = (
    (cast(Table, UsageRecord.__table__), USAGE_COLUMNS),
    (cast(Table, UpstreamAttempt.__table__), ATTEMPT_COLUMNS),
    (cast(Table, LedgerEntry.__table__), LEDGER_COLUMNS),
)

# Model → credits per image (the default catalog, app/catalog/defaults.py) and share of traffic.
MODELS = {
    "imagen4": (8, 30),
    "imagen4-fast": (4, 25),
    "gpt-image-1.5-official": (10, 15),
    "imagen4-ultra": (12, 8),
    "grok-imagine": (5, 8),
    "ideogram-v3": (8, 7),
    "kling-image-o1": (6, 7),
}
ACCOUNT_NAMES = (
    "search", "ads", "design", "marketing", "mobile", "web", "growth", "support", "research", "data",
    "games", "maps", "shop", "video", "news", "travel", "photos", "docs", "labs", "internal",
)  # fmt: skip
INITIAL_GRANT = 100_000 * SCALE
TOP_UP = 100_000 * SCALE
TOP_UP_BELOW = 10_000 * SCALE
# Share of requests by hour of the UTC day: a working day with an evening tail.
HOUR_WEIGHTS = (2, 1, 1, 1, 1, 2, 4, 7, 10, 12, 12, 11, 10, 11, 12, 12, 11, 9, 7, 6, 5, 4, 3, 2)


@dataclass(frozen=True)
class ChannelDef:
    id: str
    name: str
    provider: str
    multiplier: int  # 1/10,000
    models: dict[str, str]  # gateway model → upstream model
    costs: dict[str, int]  # upstream model → cost per image, 1/10,000

    def orm(self, created_at: datetime) -> Channel:
        return Channel(
            id=self.id,
            name=self.name,
            provider=self.provider,
            base_url=f"https://{self.name}.example.com",
            models=self.models,
            multiplier=Decimal(self.multiplier) / SCALE,
            costs={model: str(Decimal(cost) / SCALE) for model, cost in self.costs.items()},
            created_at=created_at,
            updated_at=created_at,
        )


def _channels(rng: random.Random) -> list[ChannelDef]:
    def new_id() -> str:
        return f"ch_{rng.getrandbits(96):024x}"

    return [
        ChannelDef(
            new_id(), "gemini-api", "gemini-image", SCALE,
            {"imagen4": "gemini-3.1-flash-image", "imagen4-fast": "gemini-3.1-flash-image",
             "imagen4-ultra": "gemini-3-pro-image"},
            {"gemini-3.1-flash-image": 390, "gemini-3-pro-image": 1340},
        ),
        ChannelDef(
            new_id(), "vertex-relay", "google-imagen", 12_000,
            {"imagen4": "imagen-4.0-generate-001", "imagen4-fast": "imagen-4.0-fast-generate-001",
             "imagen4-ultra": "imagen-4.0-ultra-generate-001"},
            {"imagen-4.0-generate-001": 400, "imagen-4.0-fast-generate-001": 200, "imagen-4.0-ultra-generate-001": 600},
        ),
        ChannelDef(
            new_id(), "openai-direct", "openai-images", SCALE,
            {"gpt-image-1.5-official": "gpt-image-1.5"}, {"gpt-image-1.5": 420},
        ),
        # An aggregator without a price for every model: those attempts have no upstream cost.
        ChannelDef(
            new_id(), "aggregator", "fal", SCALE,
            {"grok-imagine": "xai/grok-imagine-image", "kling-image-o1": "kling/o1-image",
             "ideogram-v3": "ideogram/v3", "gpt-image-1.5-official": "openai/gpt-image-1.5"},
            {"xai/grok-imagine-image": 200, "ideogram/v3": 600},
        ),
    ]  # fmt: skip


# Model → the channels that serve it, in the order routing tries them (second = failover).
ROUTES = {
    "imagen4": ("gemini-api", "vertex-relay"),
    "imagen4-fast": ("gemini-api", "vertex-relay"),
    "imagen4-ultra": ("vertex-relay", "gemini-api"),
    "gpt-image-1.5-official": ("openai-direct", "aggregator"),
    "grok-imagine": ("aggregator",),
    "kling-image-o1": ("aggregator",),
    "ideogram-v3": ("aggregator",),
}
# A failed upstream call: (channels_tried outcome, recorded outcome, HTTP status, error code,
# possibly billed, latency range in ms, error text), with its share among failures.
FAILURES = (
    ("retryable", "failed", 503, "upstream_error", False, (200, 2_000), "upstream answered 503"),
    ("rate_limited", "failed", 429, "rate_limited", False, (50, 300), "quota exceeded"),
    ("ambiguous", "ambiguous", None, "upstream_timeout", True, (60_000, 120_000), "no answer within the timeout"),
)
FAILURE_WEIGHTS = (55, 25, 20)
REJECTED = ("rejected", "rejected", 400, "upstream_rejected", False, (100, 800), "prompt refused by the provider")


@dataclass(frozen=True)
class Encoding:
    """How one backend's driver takes a column type's value."""

    name: str
    moment: Callable[[datetime], Any]  # from a naive UTC datetime
    flag: Callable[[bool], Any]

    @staticmethod
    def json(value: object) -> str:
        return orjson.dumps(value).decode()


SQLITE = Encoding("sqlite", lambda at: at.isoformat(" ", "microseconds"), int)
POSTGRES = Encoding("postgresql", lambda at: at.replace(tzinfo=UTC), bool)
DIALECTS: dict[str, Dialect] = {
    "sqlite": sqlite_dialect.dialect(),
    "postgresql": postgres_dialect.dialect(),  # type: ignore[no-untyped-call]  # untyped in SQLAlchemy
}


def check_schema() -> None:
    """Every column the tables require is generated here, and every generated one still exists."""
    for table, columns in TABLES:
        unknown = [c for c in columns if c not in table.c]
        required = [
            c.name
            for c in table.c
            if c.name not in columns and not c.nullable and c.server_default is None and not c.primary_key
        ]
        if unknown or required:
            raise SystemExit(f"{table.name}: the benchmark's columns are out of date ({unknown=}, {required=})")


def check_encoding(encoding: Encoding) -> None:
    """The hand-made encoding equals what SQLAlchemy binds through the application's column types."""
    dialect = DIALECTS[encoding.name]
    usage = cast(Table, UsageRecord.__table__).c
    attempts = cast(Table, UpstreamAttempt.__table__).c
    at = datetime(2026, 11, 30, 23, 59, 59, 999_999)
    samples = [
        (usage.created_at, at.replace(tzinfo=UTC), encoding.moment(at)),
        (usage.credits, Decimal("4.8"), 48_000),
        (attempts.possibly_billed, True, encoding.flag(True)),
    ]
    for column, value, ours in samples:
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        theirs = process(value) if process else value
        if theirs != ours or type(theirs) is not type(ours):
            raise SystemExit(f"{encoding.name}: {column} is stored as {theirs!r}; the benchmark writes {ours!r}")
    process = usage.channels_tried.type.dialect_impl(dialect).bind_processor(dialect)
    if process is None or orjson.loads(process([{"a": 1}])) != orjson.loads(Encoding.json([{"a": 1}])):
        raise SystemExit(f"{encoding.name}: JSON columns are no longer stored as JSON text")


@dataclass
class Batch:
    usage: list[tuple[Any, ...]] = field(default_factory=list)
    attempts: list[tuple[Any, ...]] = field(default_factory=list)
    ledger: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass
class Expected:
    """What the month holds, for checking the reports and exports against."""

    requests: int = 0
    credits: int = 0  # charged for the month's succeeded requests, 1/10,000
    attempts: int = 0  # started within the month
    ledger: int = 0  # entries created within the month
    rows_loaded: int = 0  # every table, every month


@dataclass(frozen=True)
class AccountDef:
    id: str
    name: str
    keys: tuple[str, ...]
    budget_window: bool


class Month:
    """`requests` requests in the calendar month starting at `start` (UTC), plus `history` times
    as many in the month before (a table that holds more than the month reported on)."""

    def __init__(self, start: datetime, requests: int, history: float = 0.25, seed: int = 15) -> None:
        self.start = start
        self.end = (start + timedelta(days=32)).replace(day=1)
        self.requests = requests
        self.history_requests = int(requests * history)
        self.seed = seed
        rng = random.Random(seed)
        self.channels = _channels(rng)
        self._channel = {c.name: c for c in self.channels}
        self.accounts = [
            AccountDef(
                f"acc_{rng.getrandbits(96):024x}",
                f"team-{name}",
                tuple(f"key_{rng.getrandbits(96):024x}" for _ in range(3 if i < 10 else 2)),
                budget_window=i % 7 == 3,
            )
            for i, name in enumerate(ACCOUNT_NAMES)
        ]
        self.balances: dict[str, int] = {}
        self.expected = Expected()

    @property
    def first_day(self) -> datetime:
        return (self.start - timedelta(days=1)).replace(day=1) if self.history_requests else self.start

    def entities(self) -> tuple[list[Account], list[ApiKey], list[Channel]]:
        """The rows the traffic refers to, as ORM objects (few, so written through the models)."""
        at = self.first_day.replace(tzinfo=UTC) - timedelta(days=1)
        accounts = [
            Account(id=a.id, name=a.name, balance=Decimal(0), held=Decimal(0), webhook_secret="x" * 40, created_at=at)
            for a in self.accounts
        ]
        keys = [
            ApiKey(
                id=key,
                account_id=a.id,
                name=f"{a.name}-{('prod', 'staging', 'batch')[j]}",
                prefix=f"igw_{key[4:10]}",
                key_hash=f"{key[4:]}{'0' * 40}",
                created_at=at,
            )
            for a in self.accounts
            for j, key in enumerate(a.keys)
        ]
        return accounts, keys, [c.orm(at) for c in self.channels]

    def batches(self, encoding: Encoding, size: int) -> Iterator[Batch]:
        """Every row, oldest first, `size` requests at a time."""
        rng = random.Random(self.seed + 1)
        self.balances = {}
        self.expected = Expected()
        batch = Batch()
        ids = _Ids()
        periods = [(self.first_day, self.start, self.history_requests)] if self.history_requests else []
        periods.append((self.start, self.end, self.requests))
        for period_start, period_end, count in periods:
            self._grants(batch, encoding, ids, period_start)
            in_month = period_start == self.start
            for at in _moments(rng, period_start, (period_end - period_start).days, count):
                self._request(rng, batch, encoding, ids, at, in_month)
                if len(batch.usage) >= size:
                    yield self._counted(batch)
                    batch = Batch()
        yield self._counted(batch)

    def _counted(self, batch: Batch) -> Batch:
        self.expected.rows_loaded += len(batch.usage) + len(batch.attempts) + len(batch.ledger)
        return batch

    def _grants(self, batch: Batch, encoding: Encoding, ids: _Ids, at: datetime) -> None:
        if self.balances:
            return  # the first period's grants carry on
        for account in self.accounts:
            self._grant(batch, encoding, ids, account.id, INITIAL_GRANT, at, "initial credits")

    def _grant(
        self, batch: Batch, encoding: Encoding, ids: _Ids, account: str, amount: int, at: datetime, note: str
    ) -> None:
        balance = self.balances[account] = self.balances.get(account, 0) + amount
        batch.ledger.append(
            (ids.ledger(), account, "grant", amount, balance, None, note, "finance", encoding.moment(at))
        )
        if self.start <= at < self.end:
            self.expected.ledger += 1

    def _request(
        self, rng: random.Random, batch: Batch, encoding: Encoding, ids: _Ids, at: datetime, in_month: bool
    ) -> None:
        account = rng.choices(self.accounts, cum_weights=_ACCOUNT_CUM)[0]
        key = account.keys[min(int(rng.expovariate(1.5)), len(account.keys) - 1)]
        model = rng.choices(_MODEL_NAMES, cum_weights=_MODEL_CUM)[0]
        unit = MODELS[model][0] * SCALE
        requested = rng.choices((1, 2, 4), cum_weights=(60, 75, 100))[0]
        request_id = f"req_{rng.getrandbits(96):024x}"
        route = [self._channel[name] for name in ROUTES[model]]
        roll = rng.random()
        status = "succeeded" if roll < 0.93 else "failed" if roll < 0.975 else "filtered" if roll < 0.995 else "expired"

        calls: list[tuple[Any, ...]] = []  # (channel, failure or None, latency, images)
        if status == "succeeded":
            failovers = rng.choices((0, 1, 2), cum_weights=(92, 99, 100))[0]
            calls = [(route[n % len(route)], _failure(rng), 0) for n in range(failovers)]
            calls.append((route[failovers % len(route)], None, requested))
        elif status == "failed":
            tries = rng.choices((1, 2, 3), cum_weights=(60, 90, 100))[0]
            calls = [(route[n % len(route)], _failure(rng), 0) for n in range(tries)]
            if rng.random() < 0.1:
                calls = [(route[0], REJECTED, 0)]
        elif status == "filtered":
            calls = [(route[0], None, requested)]  # all filtered: a 200 the provider bills

        tried: list[dict[str, Any]] = []
        moment = at
        for n, (channel, failure, images) in enumerate(calls, start=1):
            upstream_model = channel.models[model]
            if failure is None:
                latency = rng.randint(3_000, 20_000)
                outcome, recorded, http_status, code, billed, error = (
                    "filtered" if status == "filtered" else "ok",
                    "succeeded",
                    200,
                    None,
                    True,
                    None,
                )
            else:
                outcome, recorded, http_status, code, billed, (low, high), error = failure
                latency = rng.randint(low, high)
            cost_each = channel.costs.get(upstream_model)
            cost = cost_each * images if billed and cost_each is not None else None
            started = encoding.moment(moment)
            batch.attempts.append(
                (ids.attempt(), request_id, account.id, n, channel.id, channel.name, channel.provider, upstream_model,
                 started, latency, recorded, http_status, code, error, images, encoding.flag(billed), cost)
            )  # fmt: skip
            if self.start <= moment < self.end:
                self.expected.attempts += 1
            record: dict[str, Any] = {"channel_id": channel.id, "channel": channel.name, "outcome": outcome}
            record["latency_ms"] = latency
            if http_status is not None:
                record["status"] = http_status
            if error is not None:
                record["error"] = error
            tried.append(record)
            moment += timedelta(milliseconds=latency + 5)

        last = calls[-1][0] if calls else None
        served = last if status == "succeeded" else None
        delivered = 0
        credits = 0
        error_code = None
        if status == "succeeded":
            delivered = requested - 1 if requested > 1 and rng.random() < 0.03 else requested
            credits = unit * cast(ChannelDef, served).multiplier // SCALE * delivered
        elif status == "filtered":
            error_code = "content_filtered"
        elif status == "expired":
            error_code = "hold_expired"
            moment = at + timedelta(minutes=15)
        else:
            error_code = calls[-1][1][3]
        completed = moment + timedelta(milliseconds=40)
        user = f"user-{int(rng.paretovariate(1.1)) % 3000}" if rng.random() < 0.7 else None
        client_id = f"{rng.getrandbits(128):032x}" if rng.random() < 0.25 else None
        metadata = {"project": f"project-{rng.randrange(12)}"} if rng.random() < 0.2 else {}
        window = f"month:{at:%Y-%m}-01" if account.budget_window else None
        batch.usage.append(
            (request_id, account.id, key, "/v1/images/generations", model, status, unit * 12_000 // SCALE * requested,
             unit, SCALE, requested, last.models[model] if last else None, last.id if last else None,
             last.name if last else None, last.provider if last else None, served.multiplier if served else None,
             delivered, credits, len(calls), Encoding.json(tried), int((completed - at).total_seconds() * 1000),
             error_code, user, client_id, Encoding.json(metadata), encoding.moment(at), encoding.moment(completed),
             encoding.moment(at + timedelta(minutes=5)), window, None)
        )  # fmt: skip
        if in_month:
            self.expected.requests += 1
            self.expected.credits += credits
        if credits:
            balance = self.balances[account.id] = self.balances[account.id] - credits
            batch.ledger.append(
                (ids.ledger(), account.id, "charge", -credits, balance, request_id, f"{delivered} image(s)", "gateway",
                 encoding.moment(completed))
            )  # fmt: skip
            if self.start <= completed < self.end:
                self.expected.ledger += 1
            if balance < TOP_UP_BELOW:
                self._grant(batch, encoding, ids, account.id, TOP_UP, completed + timedelta(seconds=1), "top-up")


_MODEL_NAMES = tuple(MODELS)
_MODEL_CUM = tuple(sum(share for _, share in list(MODELS.values())[: i + 1]) for i in range(len(MODELS)))
# Accounts from very large to tiny (Zipf-like), as teams are.
_ACCOUNT_CUM = tuple(sum(1 / (j + 1) ** 0.9 for j in range(i + 1)) for i in range(len(ACCOUNT_NAMES)))


def _failure(rng: random.Random) -> tuple[Any, ...]:
    return rng.choices(FAILURES, weights=FAILURE_WEIGHTS)[0]


class _Ids:
    def __init__(self) -> None:
        self._attempt = 0
        self._ledger = 0

    def attempt(self) -> int:
        self._attempt += 1
        return self._attempt

    def ledger(self) -> int:
        self._ledger += 1
        return self._ledger


def _moments(rng: random.Random, start: datetime, days: int, count: int) -> Iterator[datetime]:
    """`count` moments in order over `days` days from `start`: weekends quieter, nights quiet."""
    weights = [0.45 if (start + timedelta(days=d)).weekday() >= 5 else 1.0 for d in range(days)]
    per_day = [int(count * w / sum(weights)) for w in weights]
    for d in range(count - sum(per_day)):
        per_day[d % days] += 1
    hour_cum = [sum(HOUR_WEIGHTS[: h + 1]) for h in range(24)]
    for d, n in enumerate(per_day):
        day = start + timedelta(days=d)
        hours = rng.choices(range(24), cum_weights=hour_cum, k=n)
        for seconds in sorted(h * 3600 + rng.random() * 3600 for h in hours):
            yield day + timedelta(seconds=seconds)


async def create_entities(db: Database, month: Month) -> None:
    accounts, keys, channels = month.entities()
    async with db.transaction() as session:
        session.add_all(accounts)
        await session.flush()
        session.add_all([*keys, *channels])


def _placeholders(columns: tuple[str, ...]) -> str:
    return f"({', '.join(f'{chr(34)}{c}{chr(34)}' for c in columns)}) VALUES ({', '.join('?' * len(columns))})"


def load_sqlite(path: Path, month: Month, batch_size: int) -> None:
    """Big transactions through the plain driver, the journal off while loading, then ANALYZE."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=OFF")  # the gateway turns WAL back on when it connects
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-524288")  # 512 MB: the indexes take random inserts
        statements = [f"INSERT INTO {table.name} {_placeholders(columns)}" for table, columns in TABLES]
        for batch in month.batches(SQLITE, batch_size):
            connection.execute("BEGIN")
            for statement, rows in zip(statements, (batch.usage, batch.attempts, batch.ledger), strict=True):
                connection.executemany(statement, rows)
            connection.execute("COMMIT")
        connection.executemany(
            "UPDATE accounts SET balance = ? WHERE id = ?", [(b, a) for a, b in month.balances.items()]
        )
        connection.execute("ANALYZE")
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


async def load_postgres(dsn: str, month: Month, batch_size: int) -> None:
    """COPY (binary, through asyncpg), then VACUUM ANALYZE: statistics and a visibility map, as
    autovacuum would leave a table that has been written for a month."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("SET synchronous_commit = off")
        for batch in month.batches(POSTGRES, batch_size):
            async with connection.transaction():
                for (table, columns), rows in zip(TABLES, (batch.usage, batch.attempts, batch.ledger), strict=True):
                    await connection.copy_records_to_table(table.name, records=rows, columns=columns)
        await connection.executemany(
            "UPDATE accounts SET balance = $1 WHERE id = $2", [(b, a) for a, b in month.balances.items()]
        )
        await connection.execute("VACUUM ANALYZE usage_records, upstream_attempts, ledger_entries, accounts")
    finally:
        await connection.close()
