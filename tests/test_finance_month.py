"""Finance's month, end to end (issue 15's "done when"): traffic over several teams, two models and
two channels with failovers and timeouts, spread over three days; then what finance does with it.

- the usage report's totals equal the ledger's charges, to the last 1/10,000 of a credit;
- the attempt export lists every call the provider may bill, counted from the fake provider's side;
- the provider's own file reconciles clean, and the same file missing a day is flagged;
- a monthly budget stops a team at its limit with no overdraft;
- the low-balance alert arrives once, signed.

The days are made by moving each day's finished rows back in time after its traffic (usage
records, attempts and ledger entries together), so the gateway code runs unchanged.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from standardwebhooks import Webhook

from app.alerts.models import Alert
from app.billing.accounts import new_webhook_secret
from app.billing.models import LedgerEntry, UpstreamAttempt, UsageRecord
from app.settings import Settings
from tests.support.fakes.channels import Upstreams, ok
from tests.support.fakes.upstream import FakeUpstream, Received, Reply
from tests.support.harness import Harness, running_app
from tests.support.receivers import Receiver, receiver

STANDARD = "imagen-4.0-generate-001"
FAST = "imagen-4.0-fast-generate-001"
MODELS = {"imagen4": STANDARD, "imagen4-fast": FAST}
SECRET = new_webhook_secret()


class Provider:
    """The fake provider behind channel `primary`: every 5th call is a 503 (never billed), every
    7th outlasts the channel's timeout (generated and billed upstream, never seen by us). It keeps
    its own books, per day and upstream model, as a real provider's usage API would."""

    def __init__(self) -> None:
        self.calls = 0
        self.day = ""
        self.generated: Counter[tuple[str, str]] = Counter()

    def __call__(self, received: Received) -> Reply:
        self.calls += 1
        upstream_model = received.path.rsplit("/", 1)[1].split(":")[0]
        if self.calls % 5 == 0:
            return Reply(503, {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})
        reply = ok(received)
        self.generated[(self.day, upstream_model)] += len(reply.json["predictions"])
        if self.calls % 7 == 0:
            return Reply(json=reply.json, delay_s=1.2)  # past the channel's 0.5 s timeout
        return reply


async def test_finance_plays_its_month(settings: Settings, upstream: FakeUpstream, tmp_path: Path) -> None:
    hooks: list[Receiver] = []
    hook = await receiver(hooks)
    settings = settings.model_copy(
        update={
            "alert_url": f"{hook.url}/alerts",
            "alert_secret": SECRET,
            "callback_allow_networks": "127.0.0.0/8",
            "callback_retry_base_s": 0.05,
            "worker_poll_s": 0.05,
        }
    )
    provider = Provider()
    try:
        async with running_app(settings) as gw:
            ups = Upstreams(upstream)
            ups.behaviour["primary"] = provider
            local = await gw.local_channel()
            await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
            primary = await _channel(gw, ups, "primary", priority=10, timeout_s=0.5, retry_ambiguous=True, cost="0.04")
            await _channel(gw, ups, "backup", priority=0, cost="0.05", behaviour=ok)

            teams = {name: await gw.create_account(credits=2000, name=name) for name in ("design", "ads", "search")}
            keys = {name: await gw.create_key(team["id"]) for name, team in teams.items()}
            # ads lives on a monthly budget; search wants to hear when it runs low.
            budget = await gw.admin(
                "PATCH", f"/admin/accounts/{teams['ads']['id']}", json={"budget": {"credits": 100, "period": "month"}}
            )
            assert budget.status_code == 200, budget.text
            low = await gw.admin("PATCH", f"/admin/accounts/{teams['search']['id']}", json={"alert_below": 1950})
            assert low.status_code == 200, low.text

            days = [datetime.now(UTC).date() - timedelta(days=back) for back in (2, 1, 0)]
            statuses: Counter[int] = Counter()
            for number, day in enumerate(days):
                provider.day = day.isoformat()
                await _a_day_of_traffic(gw, keys, statuses)
                if number < len(days) - 1:
                    await _age_everything(gw, days=1)
            # The budget let ads spend up to 100 credits and no further.
            assert statuses[402] > 0, statuses
            assert set(statuses) <= {200, 402}, statuses

            start = (days[0] - timedelta(days=1)).isoformat()
            end = (days[-1] + timedelta(days=1)).isoformat()
            await _report_equals_ledger(gw, start, end)
            await _attempts_list_every_billable_call(gw, provider, start, end)
            await _provider_file_reconciles(gw, primary, provider, days)
            await _budget_held(gw, teams["ads"]["id"])
            await _low_balance_alert_arrives_once_signed(gw, hook, teams["search"])
            assert await gw.ledger_problems() == []
    finally:
        for started in hooks:
            await started.stop()


async def _channel(
    gw: Harness, ups: Upstreams, name: str, *, cost: str, behaviour: Any = None, **fields: Any
) -> dict[str, Any]:
    if behaviour is not None:
        ups.behaviour[name] = behaviour
    return await gw.add_channel(
        name=name,
        provider="google-imagen",
        base_url=f"{ups.fake.url}/{name}/v1beta",
        auth={"api_key": f"key-{name}", "style": "x-goog-api-key"},
        models=MODELS,
        costs={STANDARD: cost, FAST: str(Decimal(cost) / 2)},
        **fields,
    )


async def _a_day_of_traffic(gw: Harness, keys: dict[str, str], statuses: Counter[int]) -> None:
    """Each team: a few requests of each model, 1–3 images; ads in a burst against its budget."""
    bodies = [
        {"prompt": f"p{i}", "model": model, "n": 1 + i % 3} for i in range(4) for model in ("imagen4", "imagen4-fast")
    ]
    for team in ("design", "search"):
        for body in bodies:
            response = await gw.generate(keys[team], body)
            assert response.status_code == 200, response.text
            statuses[response.status_code] += 1
    burst = await asyncio.gather(*(gw.generate(keys["ads"], body) for body in bodies))
    for response in burst:
        assert response.status_code in (200, 402), response.text
        if response.status_code == 402:
            assert response.json()["error"]["code"] == "budget_exceeded", response.text
        statuses[response.status_code] += 1


async def _age_everything(gw: Harness, days: int) -> None:
    """Move every finished request (with its attempts and ledger charge) `days` back in time."""
    shift = timedelta(days=days)
    async with gw.gateway.db.transaction() as session:
        # Read then write per row: "column - interval" is not portable between the two databases.
        records = (
            await session.execute(select(UsageRecord.id, UsageRecord.created_at, UsageRecord.completed_at))
        ).all()
        for record_id, created, completed in records:
            await session.execute(
                update(UsageRecord)
                .where(UsageRecord.id == record_id)
                .values(created_at=created - shift, completed_at=completed - shift if completed else None)
            )
        for attempt_id, started in (
            await session.execute(select(UpstreamAttempt.id, UpstreamAttempt.started_at))
        ).all():
            await session.execute(
                update(UpstreamAttempt).where(UpstreamAttempt.id == attempt_id).values(started_at=started - shift)
            )
        for entry_id, created in (await session.execute(select(LedgerEntry.id, LedgerEntry.created_at))).all():
            await session.execute(
                update(LedgerEntry).where(LedgerEntry.id == entry_id).values(created_at=created - shift)
            )


async def _report_equals_ledger(gw: Harness, start: str, end: str) -> None:
    report = await gw.admin(
        "GET", "/admin/usage", params={"start": start, "end": end, "group_by": "account,model,channel"}
    )
    assert report.status_code == 200, report.text
    body = report.json()
    ledger = await _csv(gw, "/admin/ledger/export", start=start, end=end)
    charged = -sum((Decimal(row["amount"]) for row in ledger if row["kind"] == "charge"), Decimal(0))
    assert Decimal(body["totals"]["credits"]) == charged > 0
    # The rows add up to the totals, and so does the per-request export.
    assert sum(Decimal(row["credits"]) for row in body["rows"]) == charged
    usage = await _csv(gw, "/admin/usage/export", start=start, end=end)
    assert sum(Decimal(row["credits"]) for row in usage) == charged
    assert (
        sum(int(row["images_delivered"]) for row in usage if row["status"] == "succeeded") == body["totals"]["images"]
    )
    # Money beside the credits: revenue at the default 0.01 a credit, margin after upstream cost.
    totals = body["totals"]
    assert Decimal(totals["revenue"]) == charged * Decimal("0.01")
    assert Decimal(totals["margin"]) == Decimal(totals["revenue"]) - Decimal(totals["upstream_cost"])
    attempts = await _csv(gw, "/admin/attempts/export", start=start, end=end)
    assert Decimal(totals["upstream_cost"]) == sum(
        (Decimal(row["upstream_cost"]) for row in attempts if row["upstream_cost"]), Decimal(0)
    )
    # Days and months as finance groups them.
    by_day = await gw.admin("GET", "/admin/usage", params={"start": start, "end": end, "group_by": "day"})
    assert len(by_day.json()["rows"]) == 3
    assert sum(Decimal(row["credits"]) for row in by_day.json()["rows"]) == charged


async def _attempts_list_every_billable_call(gw: Harness, provider: Provider, start: str, end: str) -> None:
    attempts = await _csv(gw, "/admin/attempts/export", start=start, end=end)
    primary = [row for row in attempts if row["channel"] == "primary"]
    # Every call the fake provider received is a row, and each that it answered or worked on
    # (all but the 503s) is possibly billed: the 7th calls timed out on our side.
    assert len(primary) == provider.calls
    billable = [row for row in primary if row["possibly_billed"] == "true"]
    assert len(billable) == provider.calls - provider.calls // 5
    outcomes = Counter(row["outcome"] for row in primary)
    assert outcomes["failed"] == provider.calls // 5
    assert outcomes["ambiguous"] == len([n for n in range(1, provider.calls + 1) if n % 7 == 0 and n % 5 != 0])
    # Each timed-out request failed over to the backup, which served it.
    assert {row["outcome"] for row in attempts if row["channel"] == "backup"} == {"succeeded"}


async def _provider_file_reconciles(gw: Harness, channel: dict[str, Any], provider: Provider, days: list[date]) -> None:
    lines = ["date,upstream_model,images"] + [
        f"{day},{model},{images}" for (day, model), images in sorted(provider.generated.items())
    ]
    clean = await gw.admin(
        "POST",
        "/admin/reconcile",
        params={"channel": channel["name"]},
        content="\n".join(lines) + "\n",
        headers={"content-type": "text/csv"},
    )
    assert clean.status_code == 200, clean.text
    assert clean.json()["ok"] is True, clean.json()
    missing_day = [line for line in lines if not line.startswith(days[1].isoformat())]
    flagged = await gw.admin(
        "POST",
        "/admin/reconcile",
        params={"channel": channel["id"]},
        content="\n".join(missing_day) + "\n",
        headers={"content-type": "text/csv"},
    )
    assert flagged.status_code == 200, flagged.text
    assert flagged.json()["ok"] is False
    # Only the missing day differs: the others match, timed-out calls the provider billed included.
    differing = {row["date"] for row in flagged.json()["rows"] if not row["ok"]}
    assert differing == {days[1].isoformat()}
    assert all(row["theirs"] == 0 for row in flagged.json()["rows"] if not row["ok"])


async def _budget_held(gw: Harness, account_id: str) -> None:
    account = await gw.account(account_id)
    budget = account["budget"]
    assert Decimal(budget["spent"]) <= Decimal(budget["credits"]) == 100
    assert Decimal(budget["remaining"]) == 100 - Decimal(budget["spent"])
    assert Decimal(account["held"]) == 0
    assert Decimal(account["balance"]) == 2000 - Decimal(budget["spent"])


async def _low_balance_alert_arrives_once_signed(gw: Harness, hook: Receiver, team: dict[str, Any]) -> None:
    await _eventually(lambda: _delivered_alerts(gw))
    await asyncio.sleep(0.3)  # more delivery rounds: nothing is sent twice
    low = [
        got for got in hook.requests if Webhook(SECRET).verify(got.body, got.headers)["type"] == "account.low_balance"
    ]
    assert len(low) == 1, [got.body for got in hook.requests]
    event = Webhook(SECRET).verify(low[0].body, low[0].headers)
    assert event["data"]["account_id"] == team["id"]
    assert Decimal(event["data"]["available"]) < 1950


async def _delivered_alerts(gw: Harness) -> bool:
    async with gw.gateway.db.sessions() as session:
        statuses = (await session.execute(select(Alert.status))).scalars().all()
    return bool(statuses) and all(status == "delivered" for status in statuses)


async def _eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _csv(gw: Harness, path: str, **params: str) -> list[dict[str, str]]:
    response = await gw.admin("GET", path, params=params)
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text, newline="")))
