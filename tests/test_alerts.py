"""Alerts reach GATEWAY_ALERT_URL signed (Standard Webhooks, GATEWAY_ALERT_SECRET), are retried on
the callbacks' schedule under one webhook-id, are given up after it, are sent once even by several
replicas, and never go to an address the SSRF guard refuses. Without a URL they are kept, not sent.

Receivers are real HTTP servers on 127.0.0.1 (allow-listed, as an operator would for a local one).
"""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select
from standardwebhooks import Webhook

from app.alerts.delivery import AlertEndpoint, AlertSender
from app.alerts.events import BudgetThreshold, LowBalance, queue_budget_threshold, queue_low_balance
from app.alerts.models import Alert
from app.billing.accounts import new_webhook_secret
from app.callbacks.schedule import BACKOFF
from app.callbacks.signing import secret_key
from app.db import Database
from app.settings import Settings
from tests.support.harness import Harness, running_app
from tests.support.processes import cli_json, gateway_command, gateway_env, stop
from tests.support.receivers import Answer, Receiver, receiver
from tests.support.sentinel import watching

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
SECRET = new_webhook_secret()


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for hook in started:
        await hook.stop()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=3, max_overflow=2)
    yield database
    await database.dispose()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:
        yield client


def low_balance(n: int = 1) -> LowBalance:
    return {"account_id": f"acc_{n}", "account_name": f"team-{n}", "available": "4.5", "alert_below": "10"}


async def queue(db: Database, n: int = 1) -> str:
    async with db.transaction() as session:
        assert await queue_low_balance(session, low_balance(n), datetime.now(UTC))
        alert_id = await session.scalar(select(Alert.id).where(Alert.data["account_id"].as_string() == f"acc_{n}"))
    assert alert_id is not None
    return alert_id


async def row(db: Database, alert_id: str) -> Alert:
    async with db.sessions() as session:
        alert = await session.get(Alert, alert_id)
    assert alert is not None
    return alert


def sender(
    db: Database, http: httpx.AsyncClient, url: str, *, retry_base_s: float = 10.0, **kwargs: Any
) -> AlertSender:
    return AlertSender(db, http, AlertEndpoint(url, SECRET), kwargs.pop("networks", LOOPBACK), retry_base_s, **kwargs)


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def alert_settings(settings: Settings, url: str | None) -> Settings:
    return settings.model_copy(
        update={
            "alert_url": url,
            "alert_secret": SECRET if url else None,
            "callback_allow_networks": "127.0.0.0/8",
            "callback_retry_base_s": 0.05,
            "worker_poll_s": 0.05,
        }
    )


async def test_an_alert_arrives_once_signed_with_its_type_timestamp_and_data(
    settings: Settings, receivers: list[Receiver]
) -> None:
    hook = await receiver(receivers)
    async with running_app(alert_settings(settings, f"{hook.url}/alerts?team=ops")) as gw:
        before = datetime.now(UTC)
        alert_id = await queue(gw.gateway.db)
        await eventually(lambda: _delivered(gw, alert_id))
        await asyncio.sleep(0.3)  # several more polls: nothing is sent again

        [got] = hook.requests
        assert (got.method, got.target) == ("POST", "/alerts?team=ops")
        assert got.headers["content-type"] == "application/json"
        assert got.headers["webhook-id"] == alert_id
        event = Webhook(SECRET).verify(got.body, got.headers)
        assert event["type"] == "account.low_balance"
        assert event["data"] == low_balance()
        stamp = datetime.fromisoformat(event["timestamp"])
        assert stamp.tzinfo is not None and abs((stamp - before).total_seconds()) < 5
        [listed] = (await gw.admin("GET", "/admin/alerts")).json()["data"]
        assert listed["status"] == "delivered" and listed["attempts"] == 1 and listed["last_error"] is None
        assert listed["delivered_at"] is not None and listed["next_attempt_at"] is None


async def _delivered(gw: Harness, alert_id: str) -> bool:
    listed = (await gw.admin("GET", "/admin/alerts", params={"status": "delivered"})).json()["data"]
    return [a["id"] for a in listed] == [alert_id]


async def test_a_failed_attempt_waits_its_turn_then_is_retried_under_the_same_webhook_id(
    db: Database, http: httpx.AsyncClient, receivers: list[Receiver]
) -> None:
    hook = await receiver(receivers, Answer(status=500, body=b"receiver is down"))
    alerts = sender(db, http, f"{hook.url}/alerts", retry_base_s=0.3)
    alert_id = await queue(db)

    assert await alerts.deliver_due() == 1
    failed = await row(db, alert_id)
    assert (failed.status, failed.attempts) == ("pending", 1)
    assert failed.last_error is not None and "500: receiver is down" in failed.last_error
    assert await alerts.deliver_due() == 0  # not due before the first delay (1 × the retry base)
    hook.answer = Answer(status=204, body=b"")
    await asyncio.sleep(0.35)
    assert await alerts.deliver_due() == 1

    first, second = hook.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == alert_id
    assert first.body == second.body
    for attempt in (first, second):
        assert Webhook(SECRET).verify(attempt.body, attempt.headers)["data"] == low_balance()
    done = await row(db, alert_id)
    assert (done.status, done.attempts, done.last_error) == ("delivered", 2, None)


async def test_an_alert_is_given_up_after_the_last_retry(
    db: Database, http: httpx.AsyncClient, receivers: list[Receiver]
) -> None:
    hook = await receiver(receivers, Answer(status=503, body=b"busy"))
    alerts = sender(db, http, hook.url, retry_base_s=0.0001)  # the whole schedule in under a second
    alert_id = await queue(db)

    async def given_up() -> bool:
        await alerts.deliver_due()
        return (await row(db, alert_id)).status == "failed"

    await eventually(given_up)
    for _ in range(5):
        assert await alerts.deliver_due() == 0

    assert len(hook.requests) == 1 + len(BACKOFF)
    assert {r.headers["webhook-id"] for r in hook.requests} == {alert_id}
    failed = await row(db, alert_id)
    assert failed.attempts == 1 + len(BACKOFF)
    assert failed.last_error is not None and "503" in failed.last_error


async def test_two_replicas_deliver_each_alert_exactly_once(
    database_url: str, http: httpx.AsyncClient, receivers: list[Receiver]
) -> None:
    # A slow receiver widens the window in which the second replica could take a claimed alert.
    hook = await receiver(receivers, Answer(delay_s=0.05))
    replicas = [Database(database_url, pool_size=3, max_overflow=2) for _ in range(2)]
    try:
        ids = {await queue(replicas[0], n) for n in range(12)}
        loops = [sender(replica, http, hook.url) for replica in replicas]

        async def run(alerts: AlertSender) -> None:
            deadline = time.monotonic() + 20
            while len(hook.requests) < len(ids) and time.monotonic() < deadline:
                await alerts.deliver_due(limit=5)

        await asyncio.gather(*(run(alerts) for alerts in loops for _ in range(2)))
        await asyncio.sleep(0.1)
        for alerts in loops:
            assert await alerts.deliver_due() == 0
        statuses = [(await row(replicas[1], alert_id)).status for alert_id in ids]
    finally:
        for replica in replicas:
            await replica.dispose()

    sent = [r.headers["webhook-id"] for r in hook.requests]
    assert sorted(sent) == sorted(ids)  # every alert, none twice
    assert statuses == ["delivered"] * len(ids)


async def test_a_url_the_ssrf_guard_refuses_is_never_connected_and_counts_as_a_failed_attempt(
    db: Database, http: httpx.AsyncClient
) -> None:
    # The settings check a literal address at start; a name that resolves to a private address
    # later (DNS changes) is caught on every attempt, before any connection.
    from tests.support.fakes.dns import FakeResolver

    async with watching("127.0.0.1") as sentinel:
        dns = FakeResolver({"alerts.internal.test": ["127.0.0.1"]})
        alerts = sender(db, http, f"http://alerts.internal.test:{sentinel.port}/hook", networks=[], resolver=dns)
        alert_id = await queue(db)

        assert await alerts.deliver_due() == 1

    assert sentinel.connections == 0
    assert dns.lookups == ["alerts.internal.test"]
    refused = await row(db, alert_id)
    assert (refused.status, refused.attempts) == ("pending", 1)
    assert refused.last_error is not None and "127.0.0.1" in refused.last_error


async def test_without_an_alert_url_alerts_are_kept_not_sent(
    settings: Settings, receivers: list[Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    hook = await receiver(receivers)
    caplog.set_level("INFO", logger="app.tasks")
    async with running_app(alert_settings(settings, None)) as gw:
        first = await queue(gw.gateway.db, 1)
        async with gw.gateway.db.transaction() as session:
            await queue_budget_threshold(
                session,
                {
                    "scope": "key",
                    "account_id": "acc_1",
                    "account_name": "team-1",
                    "key_id": "key_1",
                    "key_name": "ci",
                    "period": "month",
                    "window_start": "2026-12-01",
                    "budget": "1000",
                    "spent": "812.5",
                    "threshold": 80,
                },
            )
        await asyncio.sleep(0.3)  # several polls of the worker

        pending = (await gw.admin("GET", "/admin/alerts", params={"status": "pending", "limit": 10})).json()["data"]
        assert [a["type"] for a in pending] == ["budget.threshold", "account.low_balance"]  # newest first
        assert pending[1]["id"] == first
        assert all(a["attempts"] == 0 and a["next_attempt_at"] is not None for a in pending)
        assert (await gw.admin("GET", "/admin/alerts", params={"status": "delivered"})).json()["data"] == []
        assert (await gw.admin("GET", "/admin/alerts", params={"limit": 1})).json()["data"][0]["id"] == pending[0]["id"]
    assert hook.connections == 0
    assert "alerts are queued but not sent" in caplog.text


async def test_the_same_crossing_is_queued_once(db: Database) -> None:
    data: BudgetThreshold = {
        "scope": "account",
        "account_id": "acc_1",
        "account_name": "team-1",
        "key_id": None,
        "key_name": None,
        "period": "week",
        "window_start": "2026-11-30",
        "budget": "100",
        "spent": "100",
        "threshold": 100,
    }
    async with db.transaction() as session:
        assert await queue_budget_threshold(session, data)
        assert not await queue_budget_threshold(session, {**data, "spent": "104"})
        assert await queue_budget_threshold(session, {**data, "threshold": 80})
    async with db.sessions() as session:
        assert len((await session.scalars(select(Alert))).all()) == 2


@pytest.mark.parametrize(
    ("query", "param"),
    [("status=sent", "status"), ("limit=0", "limit"), ("limit=501", "limit"), ("type=x", "type")],
)
async def test_bad_list_parameters_are_named(gw: Harness, query: str, param: str) -> None:
    response = await gw.admin("GET", f"/admin/alerts?{query}")
    assert response.status_code == 400, response.text
    assert param in response.text
    assert (await gw.http.get("/admin/alerts")).status_code == 401


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*gateway_command(), "worker"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
async def test_worker_processes_deliver_alerts_once_and_the_cli_lists_them(
    backend: str, database_url: str, tmp_path: Path, receivers: list[Receiver]
) -> None:
    # The production shape (several workers on one PostgreSQL); the claim itself is raced on both
    # databases in-process above, so SQLite is spared the processes' start-up time.
    if backend != "postgres":
        pytest.skip("worker processes are exercised on PostgreSQL")
    hook = await receiver(receivers)
    env = gateway_env(
        database_url,
        tmp_path / "data",
        GATEWAY_ALERT_URL=f"{hook.url}/alerts",
        GATEWAY_ALERT_SECRET=SECRET,
        GATEWAY_CALLBACK_ALLOW_NETWORKS="127.0.0.0/8",
        GATEWAY_WORKER_POLL_S="0.05",
        GATEWAY_SHUTDOWN_GRACE_S="0",
    )
    db = Database(database_url, pool_size=2, max_overflow=0)
    try:
        ids = {await queue(db, n) for n in range(8)}
    finally:
        await db.dispose()
    workers = [start_worker(env) for _ in range(2)]
    try:

        async def all_arrived() -> bool:
            return len(hook.requests) >= len(ids)

        await eventually(all_arrived, timeout_s=30)
        await asyncio.sleep(0.3)
    finally:
        for worker in workers:
            await asyncio.to_thread(stop, worker)

    assert sorted(r.headers["webhook-id"] for r in hook.requests) == sorted(ids)
    assert all(Webhook(SECRET).verify(r.body, r.headers)["type"] == "account.low_balance" for r in hook.requests)
    listed = await asyncio.to_thread(cli_json, env, "alerts", "list", "--status", "delivered")
    assert {a["id"] for a in listed["data"]} == ids
    assert all(a["attempts"] == 1 for a in listed["data"])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"alert_url": "https://alerts.example.com/hook"}, "needs GATEWAY_ALERT_SECRET"),
        ({"alert_url": "https://alerts.example.com/hook", "alert_secret": "hunter2-but-long"}, "Standard Webhooks"),
        ({"alert_url": "https://alerts.example.com/hook", "alert_secret": "whsec_not*base64!"}, "Standard Webhooks"),
        ({"alert_url": "https://alerts.example.com/hook", "alert_secret": "whsec_c2hvcnQ="}, "Standard Webhooks"),
        ({"alert_url": "ftp://alerts.example.com/hook", "alert_secret": SECRET}, "http or https"),
        ({"alert_url": "alerts.example.com/hook", "alert_secret": SECRET}, "absolute http"),
        ({"alert_url": "http://169.254.169.254/latest", "alert_secret": SECRET}, "GATEWAY_CALLBACK_ALLOW_NETWORKS"),
        ({"alert_url": "http://10.1.2.3/hook", "alert_secret": SECRET}, "GATEWAY_CALLBACK_ALLOW_NETWORKS"),
    ],
)
def test_alert_settings_are_refused_at_start_with_a_reason(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, **fields)  # type: ignore[arg-type]
    assert message in str(refused.value)
    secret = fields.get("alert_secret", "")
    assert secret in ("", SECRET) or secret not in str(refused.value)  # a refused secret is never echoed


def test_alert_settings_that_are_accepted() -> None:
    unset = Settings(_env_file=None, alert_url="  ", alert_secret="")
    assert (unset.alert_url, unset.alert_secret) == (None, None)
    allowed = Settings(
        _env_file=None,
        alert_url="http://10.1.2.3:8080/hook",
        alert_secret=SECRET.rstrip("="),  # unpadded base64 is still the same key
        callback_allow_networks="10.0.0.0/8",
    )
    assert allowed.alert_secret is not None and secret_key(allowed.alert_secret) == secret_key(SECRET)
