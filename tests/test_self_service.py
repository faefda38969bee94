"""A team helping itself: its own task list and usage, rotating its webhook secret without losing a
callback, and the x-ratelimit-* headers of a key with an rpm."""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import update
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app.billing.models import Account
from app.db import utcnow
from app.http.rate_limit_headers import go_duration
from app.keys.auth import Caller
from app.keys.limits import KeyLimiter
from app.settings import Settings
from tests.support.databases import REDIS_URL
from tests.support.harness import Harness, running_app
from tests.support.receivers import Receiver, receiver

LIMIT = "x-ratelimit-limit-requests"
REMAINING = "x-ratelimit-remaining-requests"
RESET = "x-ratelimit-reset-requests"
# Go's time.Duration as OpenAI prints it: "0s", "20ms", "1.5s", "59.998s", "1m0s".
GO_DURATION = re.compile(r"0s|\d+ms|(\d+h)?(\d+m)?\d+(\.\d+)?s")


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture
async def quiet(settings: Settings) -> AsyncIterator[Harness]:
    """No worker: submitted tasks stay queued until canceled."""
    async with running_app(settings.model_copy(update={"run_worker": False})) as gw:
        yield gw


# --- GET /v1/tasks -------------------------------------------------------------------------


async def test_the_task_list_pages_newest_first_filters_and_shows_only_the_account_s_own(quiet: Harness) -> None:
    account_id, key = await quiet.account_with_key(credits=1000)
    other_key = await quiet.create_key(account_id)  # a second key of the same team
    _, stranger = await quiet.account_with_key(credits=1000)
    submitted = []
    for n, by in enumerate([key, other_key, key, key, other_key]):
        response = await quiet.generate(by, {"prompt": f"task {n}", "async": True})
        assert response.status_code == 202, response.text
        submitted.append(response.json()["id"])
    strangers_task = (await quiet.generate(stranger, {"prompt": "theirs", "async": True})).json()["id"]
    for task_id in submitted[1:3]:
        assert (await quiet.http.post(f"/v1/tasks/{task_id}/cancel", headers=_auth(key))).status_code == 200

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = await quiet.http.get("/v1/tasks", params=params, headers=_auth(key))
        assert page.status_code == 200, page.text
        body = page.json()
        assert set(body) == {"data", "next_cursor"}
        assert len(body["data"]) <= 2
        seen += body["data"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [task["id"] for task in seen] == submitted[::-1]  # newest first, every one once, theirs never
    # Each item is the task exactly as GET /v1/tasks/{id} renders it.
    assert seen[0] == (await quiet.http.get(f"/v1/tasks/{submitted[-1]}", headers=_auth(key))).json()

    canceled = await quiet.http.get("/api/v1/tasks", params={"status": "canceled"}, headers=_auth(other_key))
    assert canceled.status_code == 200
    assert [task["id"] for task in canceled.json()["data"]] == submitted[2:0:-1]
    assert {task["status"] for task in canceled.json()["data"]} == {"canceled"}

    theirs = await quiet.http.get("/v1/tasks", headers=_auth(stranger))
    assert [task["id"] for task in theirs.json()["data"]] == [strangers_task]
    # Our cursor in their hands pages through their tasks only.
    first_page = await quiet.http.get("/v1/tasks", params={"limit": 1}, headers=_auth(key))
    replayed = await quiet.http.get(
        "/v1/tasks", params={"cursor": first_page.json()["next_cursor"]}, headers=_auth(stranger)
    )
    assert replayed.status_code == 200
    assert {task["id"] for task in replayed.json()["data"]} <= {strangers_task}


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"status": "done"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b"2026-11-01T00:00:00|task_x").decode()}, "cursor"),  # no zone
        ({"cursor": base64.urlsafe_b64encode(b"yesterday|task_x").decode()}, "cursor"),
        # An instant whose offset takes it before year 1 in UTC.
        ({"cursor": base64.urlsafe_b64encode(b"0001-01-01T00:00:00+05:00|task_x").decode()}, "cursor"),
        ({"state": "queued"}, "state"),
    ],
)
async def test_bad_task_list_parameters_are_400_naming_them(quiet: Harness, params: dict[str, Any], param: str) -> None:
    _, key = await quiet.account_with_key()
    response = await quiet.http.get("/v1/tasks", params=params, headers=_auth(key))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert (await quiet.http.get("/v1/tasks", params=params)).status_code == 401  # the key comes first


# --- GET /v1/usage -------------------------------------------------------------------------


async def test_own_usage_is_the_account_s_alone_without_the_gateway_s_economics(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=1000)
    second_key = await gw.create_key(account_id)
    _, stranger = await gw.account_with_key(credits=1000)
    for by, n in [(key, 1), (key, 2), (second_key, 1)]:
        assert (await gw.generate(by, {"prompt": "x", "n": n, "user": "ana"})).status_code == 200
    assert (await gw.generate(stranger, {"prompt": "x", "n": 4})).status_code == 200

    usage = await gw.http.get("/v1/usage", headers=_auth(key))
    assert usage.status_code == 200, usage.text
    assert usage.json() == {"rows": [], "totals": {"requests": 3, "images": 4, "credits": "32"}}

    by_key = (await gw.http.get("/v1/usage", params={"group_by": "key,day"}, headers=_auth(second_key))).json()
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert sorted((row["images"], row["requests"], row["credits"]) for row in by_key["rows"]) == [
        (1, 1, "8"),
        (3, 2, "24"),
    ]
    for row in by_key["rows"]:
        assert set(row) == {"key_id", "key_name", "day", "requests", "images", "credits"}
        assert (row["key_name"], row["day"]) == ("test", today)

    # The rows are the admin report's for this account, less upstream_cost, revenue and margin.
    admin = await gw.admin("GET", "/admin/usage", params={"group_by": "model,user,status", "account_id": account_id})
    own = await gw.http.get("/api/v1/usage", params={"group_by": "model,user,status"}, headers=_auth(key))
    economics = {"upstream_cost", "revenue", "margin"}
    expected = [{k: v for k, v in row.items() if k not in economics} for row in admin.json()["rows"]]
    assert (
        own.json()["rows"]
        == expected
        == [{"model": "imagen4", "status": "succeeded", "user": "ana", "requests": 3, "images": 4, "credits": "32"}]
    )

    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    empty = await gw.http.get("/v1/usage", params={"start": later, "group_by": "month"}, headers=_auth(key))
    assert empty.json() == {"rows": [], "totals": {"requests": 0, "images": 0, "credits": "0"}}


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"group_by": "channel"}, "group_by"),
        ({"group_by": "model,provider"}, "group_by"),
        ({"group_by": "upstream_model"}, "group_by"),
        ({"group_by": "account"}, "group_by"),
        ({"group_by": "colour"}, "group_by"),
        ({"groupby": "model"}, "groupby"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-11-02", "end": "2026-11-01"}, "end"),
    ],
)
async def test_usage_refuses_internal_groupings_and_unknown_parameters(
    quiet: Harness, params: dict[str, str], param: str
) -> None:
    _, key = await quiet.account_with_key()
    response = await quiet.http.get("/v1/usage", params=params, headers=_auth(key))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert "channel" not in response.json()["error"]["message"].split("any of", 1)[-1]


# --- webhook secret rotation ---------------------------------------------------------------


@pytest.fixture
async def hooks(settings: Settings) -> AsyncIterator[Harness]:
    quick = {"worker_poll_s": 0.05, "callback_retry_base_s": 0.2, "callback_allow_networks": "127.0.0.0/8"}
    async with running_app(settings.model_copy(update=quick)) as gw:
        yield gw


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for hook in started:
        await hook.stop()


async def _callback(gw: Harness, key: str, hook: Receiver) -> tuple[bytes, dict[str, str]]:
    """Submit a task with a callback to `hook` and return the delivery it receives."""
    before = len(hook.requests)
    submitted = await gw.generate(key, {"prompt": "x", "callback_url": f"{hook.url}/done"})
    assert submitted.status_code == 202, submitted.text
    for _ in range(300):
        if len(hook.requests) > before:
            got = hook.requests[before]
            return got.body, got.headers
        await asyncio.sleep(0.05)
    raise AssertionError("no callback arrived")


def _verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


async def test_after_a_rotation_callbacks_carry_both_signatures_for_a_day(
    hooks: Harness, receivers: list[Receiver]
) -> None:
    hook = await receiver(receivers)
    account_id, key = await hooks.account_with_key(credits=100)
    old = (await hooks.http.get("/v1/account", headers=_auth(key))).json()["webhook_secret"]

    rotated = await hooks.http.post("/v1/account/webhook-secret/rotate", headers=_auth(key))
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["webhook_secret"]
    assert new.startswith("whsec_") and new != old
    valid_until = datetime.fromisoformat(rotated.json()["previous_valid_until"])
    assert abs(valid_until - (utcnow() + timedelta(hours=24))) < timedelta(minutes=1)
    assert (await hooks.http.get("/v1/account", headers=_auth(key))).json()["webhook_secret"] == new

    body, headers = await _callback(hooks, key, hook)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert _verifies(new, body, headers) and _verifies(old, body, headers)  # receivers on either secret

    # A day later only the new secret signs.
    async with hooks.gateway.db.transaction() as session:
        await session.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(webhook_secret_rotated_at=utcnow() - timedelta(hours=24, seconds=1))
        )
    body, headers = await _callback(hooks, key, hook)
    assert len(headers["webhook-signature"].split(" ")) == 1
    assert _verifies(new, body, headers) and not _verifies(old, body, headers)


async def test_rotating_twice_keeps_only_the_secret_it_replaced(hooks: Harness, receivers: list[Receiver]) -> None:
    hook = await receiver(receivers)
    _, key = await hooks.account_with_key(credits=100)
    original = (await hooks.http.get("/api/v1/account", headers=_auth(key))).json()["webhook_secret"]
    first = (await hooks.http.post("/v1/account/webhook-secret/rotate", headers=_auth(key))).json()["webhook_secret"]
    second = (await hooks.http.post("/api/v1/account/webhook-secret/rotate", headers=_auth(key))).json()
    body, headers = await _callback(hooks, key, hook)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert _verifies(second["webhook_secret"], body, headers) and _verifies(first, body, headers)
    assert not _verifies(original, body, headers)
    assert (await hooks.http.post("/v1/account/webhook-secret/rotate")).status_code == 401


# --- x-ratelimit-* headers -----------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def limited(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Harness]:
    """The key limiter in process memory, or in Redis as several replicas would share it."""
    update: dict[str, Any] = {"run_worker": False}
    if request.param == "redis":
        update["redis_url"] = REDIS_URL
    async with running_app(settings.model_copy(update=update)) as gw:
        yield gw


def _window(response: httpx.Response) -> tuple[int, int, str]:
    assert GO_DURATION.fullmatch(response.headers[RESET]), response.headers[RESET]
    return int(response.headers[LIMIT]), int(response.headers[REMAINING]), response.headers[RESET]


def _seconds(duration: str) -> float:
    if duration.endswith("ms"):
        return int(duration[:-2]) / 1000
    minutes, _, seconds = duration[:-1].rpartition("m")
    return int(minutes or 0) * 60 + float(seconds)


async def test_a_key_with_an_rpm_sees_its_window_on_every_answer(limited: Harness) -> None:
    account_id, key = await limited.account_with_key(credits=1000, rpm=3)

    models = await limited.http.get("/v1/models", headers=_auth(key))
    assert _window(models) == (3, 3, "0s")  # reading does not spend the allowance

    remaining = []
    for _ in range(2):
        answer = await limited.generate(key, {"prompt": "x"})
        assert answer.status_code == 200, answer.text
        limit, left, reset = _window(answer)
        assert limit == 3 and 55 <= _seconds(reset) <= 60
        remaining.append(left)
    google = await limited.http.post(
        "/v1beta/models/imagen-4.0-generate-001:predict",
        json={"instances": [{"prompt": "x"}], "parameters": {"sampleCount": 1}},
        headers={"x-goog-api-key": key},
    )
    assert google.status_code == 200, google.text
    remaining.append(_window(google)[1])
    assert remaining == [2, 1, 0]

    refused = await limited.generate(key, {"prompt": "x"})
    assert refused.status_code == 429
    limit, left, reset = _window(refused)
    assert (limit, left) == (3, 0)
    assert 0 < _seconds(reset) <= 60
    assert abs(int(refused.headers["retry-after"]) - _seconds(reset)) <= 1  # the same wait, in whole seconds

    for read in (
        await limited.http.get("/v1/account", headers=_auth(key)),
        await limited.http.get("/api/v1/tasks", headers=_auth(key)),
        await limited.http.get("/v1/usage", params={"group_by": "nonsense"}, headers=_auth(key)),  # a 400 too
        await limited.http.get("/v1/tasks/task_nope", headers=_auth(key)),
    ):
        assert _window(read)[:2] == (3, 0), read.text
    assert (await limited.account(account_id))["balance"] == str(1000 - 3 * 8)


async def test_keys_without_an_rpm_get_no_rate_limit_headers(limited: Harness) -> None:
    _, key = await limited.account_with_key(credits=1000, max_concurrency=5)
    for answer in (
        await limited.generate(key, {"prompt": "x"}),
        await limited.http.get("/v1/models", headers=_auth(key)),
        await limited.http.get("/v1/tasks", headers=_auth(key)),
        await limited.http.get("/v1/models", headers=_auth("igw_not_a_key")),
    ):
        assert answer.status_code in (200, 401)
        assert not any(name.startswith("x-ratelimit") for name in answer.headers), answer.headers


@pytest.mark.parametrize("storage", ["memory", "redis"])
async def test_the_limiter_reports_what_is_left_after_admitting(storage: str) -> None:
    """The window the headers show, on each storage the limiter runs on."""
    prefix = f"igw:test:{secrets.token_hex(4)}:"
    limiter = KeyLimiter(REDIS_URL if storage == "redis" else None, prefix=prefix)
    fields: dict[str, Any] = {"account_id": "acc_w", "key_name": "w", "prefix": "igw_w", "models": None}
    fields |= {"max_concurrency": None, "credit_cap": None, "expires_at": None, "revoked": False}
    caller = Caller(key_id="key_w", rpm=2, **fields)
    try:
        assert await limiter.rpm_window(Caller(key_id="key_x", rpm=None, **fields)) is None
        empty = await limiter.rpm_window(caller)
        assert empty is not None and (empty.limit, empty.remaining, empty.reset_s) == (2, 2, 0.0)
        for left in (1, 0):
            await (await limiter.admit(caller)).release()
            window = await limiter.rpm_window(caller)
            assert window is not None and window.remaining == left and 58 < window.reset_s <= 60
    finally:
        await limiter.aclose()
        if storage == "redis":
            redis = Redis.from_url(REDIS_URL)
            stale = [key async for key in redis.scan_iter(match=prefix + "*")]
            if stale:
                await redis.delete(*stale)
            await redis.aclose()


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (0.0004, "0s"),
        (0.02, "20ms"),
        (0.9995, "1s"),
        (1.5, "1.5s"),
        (59.25, "59.25s"),
        (60, "1m0s"),
        (360, "6m0s"),
        (3725.5, "1h2m5.5s"),
    ],
)
def test_reset_is_a_go_duration_like_openai_s(seconds: float, shown: str) -> None:
    assert go_duration(seconds) == shown
    assert GO_DURATION.fullmatch(shown)
