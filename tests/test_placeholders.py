"""The `local` placeholder never stands in for a real channel, and every answer it produced says so
(sync, Google relay, task, idempotent replay); `/v1/models` offers only what can be served.

Real channels here are `openai-images` channels in front of a fake upstream on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.settings import Settings
from tests.support.fakes.upstream import FakeUpstream, Received, Reply, tiny_png_b64
from tests.support.harness import Harness, running_app

HEADER = "x-gateway-placeholder"
PREDICT = "/v1beta/models/imagen-4.0-generate-001:predict"


@pytest.fixture
async def tw(settings: Settings) -> AsyncIterator[Harness]:
    """A gateway whose task worker polls quickly."""
    async with running_app(settings.model_copy(update={"worker_poll_s": 0.05})) as gw:
        yield gw


def _openai_ok(received: Received) -> Reply:
    return Reply(json={"created": 1763600000, "data": [{"b64_json": tiny_png_b64()}] * received.json["n"]})


async def _real_channel(gw: Harness, upstream: FakeUpstream, **fields: Any) -> dict[str, Any]:
    """An openai-images channel serving imagen4 only, next to the default `local` one."""
    fields.setdefault("models", {"imagen4": "gpt-image-1.5"})
    return await gw.add_channel(
        name="openai",
        provider="openai-images",
        base_url=upstream.url + "/v1",
        auth={"api_key": "sk-test-placeholder"},
        priority=5,
        **fields,
    )


def _auth(key: str, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **headers}


async def _nothing_charged(gw: Harness, account_id: str, credits: str = "100") -> None:
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == (credits, "0")
    assert await gw.ledger_problems() == []


async def _wait_for(gw: Harness, key: str, task_id: str, timeout_s: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        task: dict[str, Any] = (await gw.http.get(f"/v1/tasks/{task_id}", headers=_auth(key))).json()
        if task["status"] in ("succeeded", "failed", "canceled"):
            return task
        assert time.monotonic() < deadline, f"task stuck in {task['status']}: {task}"
        await asyncio.sleep(0.05)


async def test_a_failing_real_channel_gets_an_honest_error_not_the_placeholder(
    gw: Harness, upstream: FakeUpstream
) -> None:
    await _real_channel(gw, upstream)
    account_id, key = await gw.account_with_key(credits=100)

    upstream.respond = lambda _r: Reply(503, {"error": {"message": "overloaded"}})
    unavailable = await gw.generate(key, {"prompt": "a harbour", "model": "imagen4"})
    upstream.respond = lambda _r: Reply(body=b"<html>gateway hiccup</html>", headers={"content-type": "text/html"})
    not_json = await gw.generate(key, {"prompt": "a harbour", "model": "imagen4"})

    for response in (unavailable, not_json):
        assert response.status_code == 502, response.text
        assert response.json()["error"]["code"] == "upstream_error"
        assert HEADER not in response.headers
    assert len(upstream.requests) == 2  # each went to the real channel, and only there
    await _nothing_charged(gw, account_id)
    rows = await gw.usage_rows()
    assert [(row["status"], row["credits"]) for row in rows] == [("failed", "0")] * 2
    assert all(row["channel"] != "local" for row in rows)


async def test_the_placeholder_still_serves_models_no_real_channel_maps(gw: Harness, upstream: FakeUpstream) -> None:
    await _real_channel(gw, upstream)
    upstream.respond = lambda _r: Reply(503, {"error": {"message": "overloaded"}})
    _, key = await gw.account_with_key(credits=100)
    response = await gw.generate(key, {"prompt": "a harbour", "model": "imagen4-fast"})
    assert response.status_code == 200, response.text
    assert response.headers[HEADER] == "true"
    assert response.json()["placeholder"] is True
    assert upstream.requests == []


async def test_a_disabled_real_channel_leaves_the_model_to_the_placeholder(gw: Harness, upstream: FakeUpstream) -> None:
    await _real_channel(gw, upstream, enabled=False)
    _, key = await gw.account_with_key(credits=100)
    response = await gw.generate(key, {"prompt": "a harbour", "model": "imagen4"})
    assert response.status_code == 200, response.text
    assert response.headers[HEADER] == "true"


async def test_an_open_circuit_on_the_real_channel_is_still_no_placeholder(
    settings: Settings, upstream: FakeUpstream
) -> None:
    tuned = settings.model_copy(update={"breaker_failures": 1, "breaker_cooldown_s": 60.0})
    async with running_app(tuned) as gw:
        real = await _real_channel(gw, upstream)
        account_id, key = await gw.account_with_key(credits=100)
        upstream.respond = lambda _r: Reply(503, {"error": {"message": "overloaded"}})
        first = await gw.generate(key, {"prompt": "x", "model": "imagen4"})
        health = (await gw.admin("GET", f"/admin/channels/{real['id']}")).json()["health"]
        assert health["state"] == "open"
        # The healthy placeholder next to it is no way out: the real channel, open or not, is the
        # only one a request for its model may reach.
        second = await gw.generate(key, {"prompt": "x", "model": "imagen4"})
        for response in (first, second):
            assert response.status_code == 502, response.text
            assert HEADER not in response.headers
        await _nothing_charged(gw, account_id)


async def test_placeholder_answers_say_so_live_and_replayed(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    for response_format in ("b64_json", "url"):
        headers = _auth(key, **{"idempotency-key": f"idem-{response_format}"})
        body = {"prompt": "a lighthouse", "model": "imagen4", "response_format": response_format}
        first = await gw.http.post("/v1/images/generations", json=body, headers=headers)
        again = await gw.http.post("/v1/images/generations", json=body, headers=headers)
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        assert again.headers["idempotent-replayed"] == "true"
        for response in (first, again):
            assert response.headers[HEADER] == "true"
            assert response.json()["placeholder"] is True
    assert (await gw.account(account_id))["balance"] == "84"  # two requests, each charged once


async def test_real_answers_carry_no_placeholder_marks(gw: Harness, upstream: FakeUpstream) -> None:
    await _real_channel(gw, upstream)
    upstream.respond = _openai_ok
    account_id, key = await gw.account_with_key(credits=100)
    headers = _auth(key, **{"idempotency-key": "real"})
    body = {"prompt": "a lighthouse", "model": "imagen4"}
    first = await gw.http.post("/v1/images/generations", json=body, headers=headers)
    again = await gw.http.post("/v1/images/generations", json=body, headers=headers)
    for response in (first, again):
        assert response.status_code == 200, response.text
        assert HEADER not in response.headers
        assert response.json().get("placeholder") is None
    assert again.headers["idempotent-replayed"] == "true"
    (row,) = await gw.usage_rows()
    assert (row["channel"], row["credits"]) == ("openai", "8")
    assert (await gw.account(account_id))["balance"] == "92"


async def test_google_relay_marks_placeholder_answers_in_a_header_only(gw: Harness, upstream: FakeUpstream) -> None:
    _, key = await gw.account_with_key(credits=100)
    headers = {"x-goog-api-key": key, "idempotency-key": "relay"}
    body = {"instances": [{"prompt": "a lighthouse"}], "parameters": {"sampleCount": 1}}
    first = await gw.http.post(PREDICT, json=body, headers=headers)
    again = await gw.http.post(PREDICT, json=body, headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    for response in (first, again):
        assert response.status_code == 200, response.text
        assert response.headers[HEADER] == "true"
        assert list(response.json()) == ["predictions"]  # Google's body has no place for it

    await _real_channel(gw, upstream)
    upstream.respond = _openai_ok
    real = await gw.http.post(PREDICT, json=body, headers={"x-goog-api-key": key})
    assert real.status_code == 200, real.text
    assert HEADER not in real.headers
    assert len(upstream.requests) == 1


async def test_task_results_from_the_placeholder_say_so_on_every_read(tw: Harness) -> None:
    _, key = await tw.account_with_key(credits=100)
    headers = _auth(key, **{"idempotency-key": "task"})
    body = {"prompt": "a lighthouse", "model": "imagen4", "async": True}
    submitted = await tw.http.post("/v1/images/generations", json=body, headers=headers)
    assert submitted.status_code == 202, submitted.text
    done = await _wait_for(tw, key, submitted.json()["id"])
    assert done["status"] == "succeeded"
    assert done["placeholder"] is True

    read = await tw.http.get(f"/v1/tasks/{done['id']}", headers=_auth(key))
    replayed = await tw.http.post("/v1/images/generations", json=body, headers=headers)
    assert replayed.headers["idempotent-replayed"] == "true"
    for response in (read, replayed):
        assert response.headers[HEADER] == "true"
        assert response.json()["placeholder"] is True


async def test_tasks_on_a_real_channel_fail_honestly_or_succeed_unmarked(tw: Harness, upstream: FakeUpstream) -> None:
    await _real_channel(tw, upstream)
    account_id, key = await tw.account_with_key(credits=100)

    upstream.respond = lambda _r: Reply(503, {"error": {"message": "overloaded"}})
    failing = await tw.generate(key, {"prompt": "x", "model": "imagen4", "async": True})
    failed = await _wait_for(tw, key, failing.json()["id"])
    assert (failed["status"], failed["error"]["code"]) == ("failed", "upstream_error")
    await _nothing_charged(tw, account_id)

    upstream.respond = _openai_ok
    working = await tw.generate(key, {"prompt": "x", "model": "imagen4", "async": True})
    succeeded = await _wait_for(tw, key, working.json()["id"])
    assert succeeded["status"] == "succeeded"
    assert "placeholder" not in succeeded
    read = await tw.http.get(f"/v1/tasks/{succeeded['id']}", headers=_auth(key))
    assert HEADER not in read.headers


async def test_models_lists_what_can_be_served_and_marks_placeholders(gw: Harness, upstream: FakeUpstream) -> None:
    _, key = await gw.account_with_key(credits=100)

    async def listed() -> dict[str, bool]:
        response = await gw.http.get("/v1/models", headers=_auth(key))
        assert response.status_code == 200, response.text
        return {model["id"]: model["placeholder"] for model in response.json()["data"]}

    only_local = await listed()
    assert only_local and all(only_local.values())

    await _real_channel(gw, upstream)
    beside_local = await listed()
    assert beside_local["imagen4"] is False
    assert {model: flag for model, flag in beside_local.items() if model != "imagen4"} == {
        model: True for model in only_local if model != "imagen4"
    }

    local = await gw.local_channel()
    await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
    assert await listed() == {"imagen4": False}  # nothing enabled maps the others
    hidden = await gw.generate(key, {"prompt": "x", "model": "imagen4-fast"})
    assert hidden.status_code == 503, hidden.text
