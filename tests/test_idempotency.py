"""`Idempotency-Key`: one generation and one charge however often a request is retried."""

from __future__ import annotations

import asyncio

from tests.support.fakes.channels import Upstreams, ok, status
from tests.support.fakes.upstream import FakeUpstream, Received, Reply
from tests.support.harness import Harness


def _headers(key: str, idem: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "idempotency-key": idem}


async def test_a_retry_replays_the_first_response_without_a_second_charge(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    body = {"prompt": "a kite", "n": 2}
    first = await gw.http.post("/v1/images/generations", json=body, headers=_headers(key, "order-1"))
    again = await gw.http.post("/v1/images/generations", json=body, headers=_headers(key, "order-1"))
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()  # same id, same images, same billing block
    assert (await gw.account(account_id))["balance"] == "84"
    assert len(await gw.usage_rows()) == 1
    assert await gw.ledger_problems() == []


async def test_same_key_with_another_body_is_422(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    await gw.http.post("/v1/images/generations", json={"prompt": "a"}, headers=_headers(key, "k"))
    other = await gw.http.post("/v1/images/generations", json={"prompt": "b"}, headers=_headers(key, "k"))
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert (await gw.account(account_id))["balance"] == "92"


async def test_keys_are_scoped_to_the_account(gw: Harness) -> None:
    _, key = await gw.account_with_key(credits=100)
    other_account, other_key = await gw.account_with_key(credits=100)
    await gw.http.post("/v1/images/generations", json={"prompt": "a"}, headers=_headers(key, "shared"))
    theirs = await gw.http.post("/v1/images/generations", json={"prompt": "a"}, headers=_headers(other_key, "shared"))
    assert theirs.status_code == 200
    assert "idempotent-replayed" not in theirs.headers
    assert (await gw.account(other_account))["balance"] == "92"


async def test_ten_concurrent_requests_with_one_key_make_one_upstream_call(gw: Harness, upstream: FakeUpstream) -> None:
    local = await gw.local_channel()
    await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
    ups = Upstreams(upstream)

    def slow(received: Received) -> Reply:
        return Reply(json=ok(received).json, delay_s=0.5)

    await ups.channel(gw, "one", slow)
    account_id, key = await gw.account_with_key(credits=100)

    responses = await asyncio.gather(
        *(
            gw.http.post("/v1/images/generations", json={"prompt": "x"}, headers=_headers(key, "burst"))
            for _ in range(10)
        )
    )

    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) >= 1 and set(codes) <= {200, 409}, codes
    assert all(r.headers.get("retry-after") for r in responses if r.status_code == 409)
    assert ups.calls("one") == 1
    assert (await gw.account(account_id))["balance"] == "92"
    # The openai SDK retries a 409; the retry now gets the stored answer.
    replay = await gw.http.post("/v1/images/generations", json={"prompt": "x"}, headers=_headers(key, "burst"))
    assert replay.status_code == 200 and replay.headers["idempotent-replayed"] == "true"
    assert ups.calls("one") == 1


async def test_a_failed_request_frees_its_key(gw: Harness, upstream: FakeUpstream) -> None:
    local = await gw.local_channel()
    await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
    ups = Upstreams(upstream)
    await ups.channel(gw, "flaky", status(503))
    account_id, key = await gw.account_with_key(credits=100)
    failed = await gw.http.post("/v1/images/generations", json={"prompt": "x"}, headers=_headers(key, "retry-me"))
    assert failed.status_code == 502
    ups.behaviour["flaky"] = ok
    retried = await gw.http.post("/v1/images/generations", json={"prompt": "x"}, headers=_headers(key, "retry-me"))
    assert retried.status_code == 200
    assert "idempotent-replayed" not in retried.headers
    assert (await gw.account(account_id))["balance"] == "92"


async def test_url_responses_and_tasks_replay_too(gw: Harness) -> None:
    _, key = await gw.account_with_key(credits=100)
    body = {"prompt": "x", "response_format": "url"}
    first = (await gw.http.post("/v1/images/generations", json=body, headers=_headers(key, "u"))).json()
    again = (await gw.http.post("/v1/images/generations", json=body, headers=_headers(key, "u"))).json()
    assert again["id"] == first["id"]
    assert (await gw.http.get(again["data"][0]["url"])).status_code == 200

    task_body = {"prompt": "x", "async": True}
    queued = await gw.http.post("/v1/images/generations", json=task_body, headers=_headers(key, "t"))
    replayed = await gw.http.post("/v1/images/generations", json=task_body, headers=_headers(key, "t"))
    assert queued.status_code == replayed.status_code == 202
    assert replayed.json()["id"] == queued.json()["id"]


async def test_google_route_replays(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    body = {"instances": [{"prompt": "x"}], "parameters": {"sampleCount": 1}}
    headers = {"x-goog-api-key": key, "idempotency-key": "g"}
    first = await gw.http.post("/v1beta/models/imagen4:predict", json=body, headers=headers)
    again = await gw.http.post("/v1beta/models/imagen4:predict", json=body, headers=headers)
    assert again.json() == first.json()
    assert again.headers["x-gateway-credits"] == "8"
    assert (await gw.account(account_id))["balance"] == "92"
