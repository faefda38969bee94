"""The three CSV exports read plain columns instead of ORM entities (for speed: tests/benchmarks/
RESULTS.md); finance must not see a byte of difference. Each export of a varied history (every
nullable field empty and filled, formula-like text everywhere, fractional amounts, ties in time
across page boundaries, a channel test's attempt) is compared byte for byte with a plain rendering
of the ORM entities, on both databases."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import aliased

from app.billing import holds, usage_export
from app.billing.amounts import charge, render
from app.billing.attempt_rows import AttemptRecord, write_attempts
from app.billing.models import Account, LedgerEntry, UpstreamAttempt, UsageRecord
from app.billing.usage_export import spreadsheet_safe
from app.db import new_id, utcnow
from tests.support.harness import Harness

T0 = datetime(2026, 11, 3, 9, tzinfo=UTC)
# Few instants for many rows: ties broken by id, across pages of 4.
INSTANTS = [T0 + timedelta(seconds=s, microseconds=m) for s in (0, 1, 3600) for m in (0, 1)]
FORMULAS = ["=SUM(A1)", "+1", "-2", "@cmd", "\tx", "plain"]


def _opt(value: Any) -> str:
    return "" if value is None else str(value)


def usage_reference(r: UsageRecord) -> list[str]:
    cells: list[Any] = [
        r.id, r.created_at.isoformat(), r.completed_at.isoformat() if r.completed_at else "", r.account_id,
        r.key_id, r.endpoint, r.model, _opt(r.upstream_model), _opt(r.channel_name), _opt(r.provider), r.status,
        r.images_requested, r.images_delivered, render(r.unit_credits), render(r.model_multiplier),
        render(r.channel_multiplier) if r.channel_multiplier is not None else "", render(r.credits), r.attempts,
        _opt(r.latency_ms), _opt(r.error_code), _opt(r.user),
        orjson.dumps(r.request_metadata).decode() if r.request_metadata else "", _opt(r.client_request_id),
    ]  # fmt: skip
    numeric = {11, 12, 13, 14, 15, 16, 17, 18}
    return [str(c) if i in numeric else spreadsheet_safe(str(c)) for i, c in enumerate(cells)]


def attempt_reference(a: UpstreamAttempt, model: str | None) -> list[str]:
    return [
        _opt(a.request_id), a.account_id, spreadsheet_safe(model or ""), str(a.n), spreadsheet_safe(a.channel_name),
        a.provider, spreadsheet_safe(a.upstream_model), a.started_at.isoformat(), str(a.latency_ms), a.outcome,
        _opt(a.http_status), spreadsheet_safe(a.error_code or ""), str(a.images),
        "true" if a.possibly_billed else "false", render(a.upstream_cost) if a.upstream_cost is not None else "",
    ]  # fmt: skip


def ledger_reference(e: LedgerEntry, name: str) -> list[str]:
    return [
        str(e.id), e.created_at.isoformat(), e.account_id, spreadsheet_safe(name), e.kind, render(e.amount),
        render(e.balance_after), _opt(e.request_id), spreadsheet_safe(e.note), spreadsheet_safe(e.actor),
    ]  # fmt: skip


def as_csv(header: Sequence[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


async def varied_history(gw: Harness) -> None:
    rng = random.Random(17)
    accounts = [(await gw.create_account(100_000, name=name))["id"] for name in ("=team", "team b")]
    grant = await gw.admin("POST", f"/admin/accounts/{accounts[0]}/credits", json={"amount": "12.3456", "note": "=x"})
    assert grant.status_code == 200, grant.text

    db = gw.gateway.db
    async with db.transaction() as session:
        for i in range(30):
            account_id = accounts[i % 2]
            request_id = new_id("req")
            unit, multiplier = Decimal(rng.choice(["8", "4.5", "0.0001"])), Decimal(rng.choice(["1", "1.5", "0.9"]))
            requested = rng.randint(1, 3)
            await holds.place_hold(
                session,
                holds.HoldTerms(
                    request_id=request_id,
                    account_id=account_id,
                    key_id=f"key_{i % 3}",
                    endpoint=rng.choice(["/v1/images/generations", "/v1beta/models/x:predict"]),
                    model=rng.choice(["imagen4", "@model"]),
                    unit_credits=unit,
                    model_multiplier=multiplier,
                    images_requested=requested,
                    hold_credits=charge(unit, multiplier, Decimal(2), requested),
                    hold_until=utcnow() + timedelta(hours=1),
                    user=rng.choice([None, *FORMULAS]),
                    metadata=rng.choice([{}, {"team": "a,b"}, {"x": "=1", "é": 'ü"q\n'}]),
                    client_request_id=rng.choice([None, f"cid-{i}", "-cid"]),
                ),
            )
            status = rng.choice(["succeeded", "succeeded", "failed", "filtered", "expired", "pending"])
            if status == "pending":
                continue
            channel = rng.choice([None, "healthy", "=chan"]) if status != "succeeded" else "healthy"
            attempts = tuple(
                AttemptRecord(
                    channel_id="ch_1",
                    channel_name=channel or "other",
                    provider="google-imagen",
                    upstream_model=rng.choice(["imagen-4.0", "+m"]),
                    started_at=rng.choice(INSTANTS),
                    latency_ms=rng.randint(0, 900),
                    outcome=rng.choice(["succeeded", "failed", "ambiguous", "rejected"]),
                    possibly_billed=rng.random() < 0.5,
                    images=rng.randint(0, 2),
                    http_status=rng.choice([None, 503, 429]),
                    error_code=rng.choice([None, "UNAVAILABLE", "-X"]),
                    upstream_cost=rng.choice([None, Decimal("0.0123"), Decimal(2)]),
                )
                for _ in range(rng.randint(0, 2))
            )
            delivered = rng.randint(1, requested) if status == "succeeded" else 0
            outcome = holds.Outcome(
                attempts=len(attempts),
                channels_tried=[{"channel": "healthy", "outcome": "failed"}],
                latency_ms=rng.randint(1, 5000),
                upstream_model=None if channel is None else "imagen-4.0",
                channel_id=None if channel is None else "ch_1",
                channel_name=channel,
                provider=None if channel is None else "google-imagen",
                channel_multiplier=None if channel is None else Decimal("1.25"),
                images_delivered=delivered,
                credits=charge(unit, multiplier, Decimal("1.25"), delivered) if status == "succeeded" else Decimal(0),
                error_code=None if status == "succeeded" else rng.choice(["upstream_error", "=err"]),
                attempt_records=attempts,
            )
            if status == "succeeded":
                assert await holds.capture(session, request_id, outcome) is not None
            else:
                assert await holds.release(session, request_id, status, outcome)
        # A channel test's call: no request, no account, no model.
        test_call = AttemptRecord("ch_1", "healthy", "google-imagen", "imagen-4.0", INSTANTS[1], 10, "failed", False)
        await write_attempts(session, None, "", [test_call])
    async with db.transaction() as session:
        for table in (UsageRecord, LedgerEntry):
            for row_id in (await session.scalars(select(table.id))).all():
                await session.execute(update(table).where(table.id == row_id).values(created_at=rng.choice(INSTANTS)))
        await session.execute(update(LedgerEntry).where(LedgerEntry.kind == "grant").values(actor="@bob"))


async def reference(gw: Harness, name: str) -> str:
    async with gw.gateway.db.sessions() as session:
        if name == "usage":
            records = (
                await session.scalars(select(UsageRecord).order_by(UsageRecord.created_at, UsageRecord.id))
            ).all()
            return as_csv(usage_export.COLUMNS, [usage_reference(r) for r in records])
        if name == "attempts":
            from app.billing.attempt_export import COLUMNS

            request = aliased(UsageRecord)
            pairs = (
                await session.execute(
                    select(UpstreamAttempt, request.model)
                    .outerjoin(request, request.id == UpstreamAttempt.request_id)
                    .order_by(UpstreamAttempt.started_at, UpstreamAttempt.id)
                )
            ).all()
            return as_csv(COLUMNS, [attempt_reference(a, model) for a, model in pairs])
        from app.billing.ledger_export import COLUMNS as LEDGER

        entries = (
            await session.execute(
                select(LedgerEntry, Account.name)
                .join(Account, Account.id == LedgerEntry.account_id)
                .order_by(LedgerEntry.created_at, LedgerEntry.id)
            )
        ).all()
        return as_csv(LEDGER, [ledger_reference(e, account_name) for e, account_name in entries])


async def test_exports_are_byte_for_byte_the_entities_rendered(gw: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(usage_export, "PAGE", 4)  # many pages, ties in time across their boundaries
    await varied_history(gw)
    for name in ("usage", "attempts", "ledger"):
        expected = await reference(gw, name)
        response = await gw.admin("GET", f"/admin/{name}/export")
        assert response.status_code == 200, response.text
        assert response.text == expected, name
        rows = list(csv.reader(io.StringIO(expected, newline="")))
        assert len(rows) > 12, (name, len(rows))  # several pages, not a trivial comparison
    usage = list(csv.DictReader(io.StringIO((await gw.admin("GET", "/admin/usage/export")).text, newline="")))
    # The history is as varied as claimed: empty and filled, formulas neutralised, metadata kept.
    for column in ("completed_at", "channel_multiplier", "user", "metadata", "client_request_id", "latency_ms"):
        assert {row[column] == "" for row in usage} == {True, False}, column
    assert any(row["user"].startswith("'=") for row in usage)
    assert '{"x":"=1","é":"ü\\"q\\n"}' in {row["metadata"] for row in usage}
