"""The request log: an operator answers "which requests of team X failed since T, on which channel,
and which of those may the provider bill us for" from `GET /admin/requests` alone, with real
channels whose fake upstreams answer 503, 429 or too slowly."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from sqlalchemy import update

from app.billing import holds
from app.billing.models import UsageRecord
from app.db import new_id, utcnow
from app.observability.logs import JsonFormatter
from app.settings import Settings
from tests.support.fakes.channels import Behaviour, Upstreams, ok, status
from tests.support.fakes.upstream import FakeUpstream, Received, Reply
from tests.support.harness import Harness, running_app
from tests.support.processes import free_port


@pytest.fixture
async def routed(settings: Settings, upstream: FakeUpstream) -> AsyncIterator[tuple[Harness, Upstreams]]:
    async with running_app(settings) as gw:
        local = await gw.local_channel()
        await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
        yield gw, Upstreams(upstream)


@contextmanager
def routing_log() -> Iterator[io.StringIO]:
    """The routing logger's lines as `image-gateway serve` writes them (JSON, formatted when
    logged, so the request's id is on them)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("app.routing")
    logger.addHandler(handler)
    try:
        yield out
    finally:
        logger.removeHandler(handler)


def unavailable(received: Received) -> Reply:
    # The upstream's message carries the channel's key: it must never reach a log line or the log.
    return Reply(503, {"error": {"code": 503, "message": "overloaded for key-flaky", "status": "UNAVAILABLE"}})


def slow(received: Received) -> Reply:
    return Reply(json=ok(received).json, delay_s=2)


async def requests_of(gw: Harness, **params: Any) -> list[dict[str, Any]]:
    response = await gw.admin("GET", "/admin/requests", params=params)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def team(gw: Harness, name: str) -> tuple[str, str]:
    account = await gw.create_account(1000, name=name)
    return account["id"], await gw.create_key(account["id"], name=f"{name}-key")


async def test_an_operator_finds_what_failed_where_and_what_may_be_billed(routed: tuple[Harness, Upstreams]) -> None:
    gw, ups = routed
    flaky = await ups.channel(gw, "flaky", ok, priority=10)
    await ups.channel(gw, "healthy", ok, priority=5)
    ups.behaviour["slow"] = slow
    slow_channel = await gw.add_channel(
        name="slow",
        provider="google-imagen",
        base_url=f"{ups.fake.url}/slow/v1beta",
        auth={"api_key": "key-slow"},
        models={"imagen4-fast": "imagen-4.0-fast-generate-001"},
        timeout_s=0.3,
    )
    x_id, x_key = await team(gw, "team-x")
    y_id, y_key = await team(gw, "team-y")

    def both(flaky_does: Behaviour, healthy_does: Behaviour) -> None:
        ups.behaviour["flaky"], ups.behaviour["healthy"] = flaky_does, healthy_does

    both(unavailable, status(503))
    earlier = await gw.generate(x_key, {"prompt": "before T"})
    assert earlier.status_code == 502
    since = datetime.now(UTC)

    both(unavailable, ok)
    with routing_log() as log_lines:
        failed_over = await gw.generate(x_key, {"prompt": "fails over"})
    assert failed_over.status_code == 200, failed_over.text
    both(unavailable, status(503))
    all_failed = await gw.generate(x_key, {"prompt": "every channel fails"})
    assert all_failed.status_code == 502
    timed_out = await gw.generate(x_key, {"model": "imagen4-fast", "prompt": "too slow"})
    assert timed_out.status_code == 504
    other_team = await gw.generate(y_key, {"prompt": "not team x"})
    assert other_team.status_code == 502
    both(status(429), status(429))
    limited = await gw.generate(x_key, {"prompt": "rate limited"})
    assert limited.status_code == 429

    # The question, answered from the request log alone.
    failed = await requests_of(gw, account="team-x", status="failed", start=since.isoformat())
    assert [r["error_code"] for r in failed] == ["rate_limited", "upstream_timeout", "upstream_error"]
    assert [r["channel"] for r in failed] == ["healthy", "slow", "healthy"]  # the channel called last
    assert [r["possibly_billed"] for r in failed] == [False, True, False]
    billable = [(r["channel"], a["outcome"]) for r in failed for a in r["attempts"] if a["possibly_billed"]]
    assert billable == [("slow", "ambiguous")]
    assert all(r["account_id"] == x_id and r["account_name"] == "team-x" and r["credits"] == "0" for r in failed)
    limited_attempts = failed[0]["attempts"]
    assert [(a["channel"], a["outcome"], a["http_status"]) for a in limited_attempts] == [
        ("flaky", "failed", 429),
        ("healthy", "failed", 429),
    ]

    # The failover: two attempts, the first failed and not billed, the second billed.
    (served,) = await requests_of(gw, account=x_id, status="succeeded")
    assert served["id"] == failed_over.json()["id"]
    detail = (await gw.admin("GET", f"/admin/requests/{served['id']}")).json()
    assert detail["key_name"] == "team-x-key" and detail["task_id"] is None
    assert (detail["channel"], detail["credits"], detail["unit_credits"]) == ("healthy", "8", "8")
    assert [
        (a["n"], a["channel"], a["provider"], a["upstream_model"], a["outcome"], a["http_status"])
        for a in detail["attempts"]
    ] == [
        (1, "flaky", "google-imagen", "imagen-4.0-generate-001", "failed", 503),
        (2, "healthy", "google-imagen", "imagen-4.0-generate-001", "succeeded", None),
    ]
    assert [(a["possibly_billed"], a["images"]) for a in detail["attempts"]] == [(False, 0), (True, 1)]
    assert detail["attempts"][0]["error_code"] == "UNAVAILABLE"  # the upstream's own code
    assert "key-flaky" not in detail["attempts"][0]["error"]
    assert detail["attempts"][0]["started_at"] <= detail["attempts"][1]["started_at"]

    # The failed attempt was logged once, with what the operator needs, and no secret.
    lines = [orjson.loads(text) for text in log_lines.getvalue().splitlines()]
    (line,) = [entry for entry in lines if entry["logger"] == "app.routing"]
    assert line["level"] == "warning" and line["request_id"] == failed_over.headers["x-request-id"]
    assert (line["channel"], line["provider"], line["upstream_model"]) == (
        "flaky",
        "google-imagen",
        "imagen-4.0-generate-001",
    )
    assert (line["outcome"], line["http_status"]) == ("failed", 503) and line["latency_ms"] >= 0
    assert "overloaded" in line["upstream_message"] and "key-flaky" not in log_lines.getvalue()

    # Filters by channel (name or id), error code, model; nothing from before T.
    by_name = await requests_of(gw, channel="slow")
    assert [r["id"] for r in by_name] == [r["id"] for r in await requests_of(gw, channel=slow_channel["id"])]
    assert [r["upstream_model"] for r in by_name] == ["imagen-4.0-fast-generate-001"]
    assert len(await requests_of(gw, error_code="upstream_error", account="team-y")) == 1
    assert len(await requests_of(gw, channel=flaky["id"])) == 0  # it never served, nor was last
    assert len(await requests_of(gw, model="imagen4-fast")) == 1
    assert len(await requests_of(gw, account="team-x")) == 5
    assert await requests_of(gw, client_request_id="nobody-sent-this") == []
    (before,) = await requests_of(gw, end=since.isoformat(), account="team-x")
    assert [a["http_status"] for a in before["attempts"]] == [503, 503]

    # Nothing was charged for a failure: team X paid for the failover's one image only.
    assert (await gw.account(x_id))["balance"] == "992"
    assert (await gw.account(y_id))["balance"] == "1000"
    assert await gw.ledger_problems() == []

    # The timed-out request's export row names the channel and upstream model it called.
    exported = {row["request_id"]: row for row in await gw.usage_rows()}
    timed_out_id = by_name[0]["id"]
    row = exported[timed_out_id]
    assert (row["channel"], row["upstream_model"], row["provider"]) == (
        "slow",
        "imagen-4.0-fast-generate-001",
        "google-imagen",
    )
    assert (row["status"], row["credits"], row["error_code"]) == ("failed", "0", "upstream_timeout")
    assert "client_request_id" in row


async def test_pages_walk_every_request_newest_first(routed: tuple[Harness, Upstreams]) -> None:
    gw, ups = routed
    await ups.channel(gw, "main", ok)
    account_id, key = await gw.account_with_key()
    made = [(await gw.generate(key, {"prompt": f"p{i}"})).json()["id"] for i in range(5)]

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        params: dict[str, Any] = {"account": account_id, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await gw.admin("GET", "/admin/requests", params=params)).json()
        seen += [r["id"] for r in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made[::-1]
    assert len((await gw.admin("GET", "/admin/requests", params={"limit": 500})).json()["data"]) == 5


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"status": "broken"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-12-02T00:00:00Z", "end": "2026-12-01T00:00:00Z"}, "end"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        # "0001-01-01T00:00:00+05:00|req_x": a well-formed instant that overflows on the way to UTC.
        ({"cursor": "MDAwMS0wMS0wMVQwMDowMDowMCswNTowMHxyZXFfeA"}, "cursor"),
        ({"client_request_id": "x" * 129}, "client_request_id"),
        ({"account": "a\x00b"}, "account"),
        ({"acount": "typo"}, "acount"),
    ],
)
async def test_bad_filters_are_400_naming_the_parameter(gw: Harness, params: dict[str, str], param: str) -> None:
    response = await gw.admin("GET", "/admin/requests", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


async def test_an_unknown_request_is_404(gw: Harness) -> None:
    response = await gw.admin("GET", "/admin/requests/req_nope")
    assert response.status_code == 404
    assert (await gw.http.get("/admin/requests")).status_code == 401


async def test_the_request_log_is_described_in_openapi(gw: Harness) -> None:
    spec = (await gw.http.get("/openapi.json")).json()
    listed = spec["paths"]["/admin/requests"]["get"]
    assert {p["name"] for p in listed["parameters"]} >= {"account", "channel", "status", "cursor", "limit"}
    assert "possibly_billed" in spec["components"]["schemas"]["AttemptOut"]["properties"]


async def test_calls_the_provider_cannot_bill_are_marked_so(routed: tuple[Harness, Upstreams]) -> None:
    gw, ups = routed
    nobody_listens = await gw.add_channel(
        name="down",
        provider="google-imagen",
        base_url=f"http://127.0.0.1:{free_port()}/v1beta",
        auth={"api_key": "key-down"},
        models={"imagen4": "imagen-4.0-generate-001"},
        priority=10,
    )
    await ups.channel(gw, "refuses", status(400))
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"prompt": "x"})

    assert response.status_code == 502
    (record,) = await requests_of(gw, account=account_id)
    assert [
        (a["channel"], a["outcome"], a["http_status"], a["error_code"], a["possibly_billed"])
        for a in record["attempts"]
    ] == [
        (nobody_listens["name"], "failed", None, "upstream_unreachable", False),
        ("refuses", "rejected", 400, "X", False),  # the fake's own error status
    ]
    assert (record["channel"], record["possibly_billed"], record["credits"]) == ("refuses", False, "0")
    assert (await gw.account(account_id))["balance"] == "100"


async def pages_of(gw: Harness, **params: Any) -> list[str]:
    """Every page of a search, followed by its cursors: the ids in the order they came."""
    seen: list[str] = []
    for _ in range(100):  # more pages than any search below has: a cursor that never moves fails
        page = (await gw.admin("GET", "/admin/requests", params=params)).json()
        seen += [r["id"] for r in page["data"]]
        if page["next_cursor"] is None:
            return seen
        params = {**params, "cursor": page["next_cursor"]}
    raise AssertionError(f"no last page: {len(seen)} rows seen")


async def test_pages_within_a_range_return_every_request_once_newest_first(gw: Harness) -> None:
    # Many requests at few instants: ties (broken by id) at page boundaries, rows exactly at start
    # (in) and at end (out). Each page's scan starts at the previous page's position, not at `end`
    # (tests/benchmarks/request_log_pages.py); that must not lose, repeat or reorder a request.
    account_id = (await gw.create_account(10_000, name="paged"))["id"]
    t0 = datetime(2026, 11, 3, 9, tzinfo=UTC)
    instants = [t0 + timedelta(seconds=s) for s in (0, 1, 1, 2, 3, 3, 3, 4)]
    made: list[tuple[datetime, str]] = []
    async with gw.gateway.db.transaction() as session:
        for i in range(24):
            terms = holds.HoldTerms(
                request_id=new_id("req"),
                account_id=account_id,
                key_id="key_paged",
                endpoint="/v1/images/generations",
                model="imagen4",
                unit_credits=Decimal(8),
                model_multiplier=Decimal(1),
                images_requested=1,
                hold_credits=Decimal(8),
                hold_until=utcnow() + timedelta(hours=1),
            )
            await holds.place_hold(session, terms)
            made.append((instants[i % len(instants)], terms.request_id))
        for instant, request_id in made:
            await session.execute(update(UsageRecord).where(UsageRecord.id == request_id).values(created_at=instant))
    newest_first = sorted(made, reverse=True)

    def expected(start: datetime | None, end: datetime | None) -> list[str]:
        return [i for at, i in newest_first if (start is None or at >= start) and (end is None or at < end)]

    ranges = [(None, None), (t0 + timedelta(seconds=1), None), (None, t0 + timedelta(seconds=3))]
    ranges += [(t0 + timedelta(seconds=1), t0 + timedelta(seconds=3)), (t0, t0 + timedelta(seconds=60))]
    for start, end in ranges:
        bounds = {name: v.isoformat() for name, v in (("start", start), ("end", end)) if v is not None}
        for limit in (1, 2, 5, 500):
            got = await pages_of(gw, account=account_id, limit=limit, **bounds)
            assert got == expected(start, end), (bounds, limit)

    # A cursor from a search without `end` (here: past it) still stops at `end`.
    first = (await gw.admin("GET", "/admin/requests", params={"account": account_id, "limit": 2})).json()
    end = t0 + timedelta(seconds=2)
    got = await pages_of(gw, account=account_id, limit=3, end=end.isoformat(), cursor=first["next_cursor"])
    assert got == expected(None, end)
