"""Auto-disable (issue 16, item 4): a channel whose upstream refuses its credentials (401/403) or no
longer knows its model (404) on GATEWAY_AUTO_DISABLE_AFTER calls in a row is disabled, with the
reason shown and one alert, while callers are served by the other channels; an operator re-enables it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.settings import Settings
from tests.support.fakes.channels import Upstreams, ok, status
from tests.support.fakes.upstream import FakeUpstream, Received, Reply
from tests.support.harness import Harness, running_app


@pytest.fixture
async def routed(settings: Settings, upstream: FakeUpstream) -> AsyncIterator[tuple[Harness, Upstreams]]:
    async with running_app(settings) as gw:
        local = await gw.local_channel()
        await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
        yield gw, Upstreams(upstream)


async def channel(gw: Harness, channel_id: str) -> dict[str, Any]:
    response = await gw.admin("GET", f"/admin/channels/{channel_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def disabled_alerts(gw: Harness) -> list[dict[str, Any]]:
    response = await gw.admin("GET", "/admin/alerts")
    assert response.status_code == 200, response.text
    return [alert for alert in response.json()["data"] if alert["type"] == "channel.disabled"]


def scripted(*replies: int) -> Any:
    """Answer the calls in turn: 200 (images) or the given error status; the last one repeats."""
    answers = list(replies)

    def answer(received: Received) -> Reply:
        code = answers.pop(0) if len(answers) > 1 else answers[0]
        return ok(received) if code == 200 else status(code)(received)

    return answer


@pytest.mark.parametrize("refusal", [401, 403, 404])
async def test_refusals_in_a_row_disable_the_channel_while_callers_are_served_elsewhere(
    routed: tuple[Harness, Upstreams], refusal: int
) -> None:
    gw, ups = routed
    broken = await ups.channel(gw, "broken", status(refusal), priority=10)
    await ups.channel(gw, "backup", ok)
    account_id, key = await gw.account_with_key(credits=100)

    for _ in range(3):
        response = await gw.generate(key, {"prompt": "x"})
        assert response.status_code == 200, response.text  # failed over to the backup
    assert (await gw.account(account_id))["balance"] == "76"  # three images at 8 credits

    shown = await channel(gw, broken["id"])
    assert shown["enabled"] is False
    assert shown["disabled_reason"].startswith(f"upstream answered {refusal} on 3 calls in a row: ")
    assert "fake" in shown["disabled_reason"]  # the upstream's own message, for the operator
    (alert,) = await disabled_alerts(gw)
    assert alert["data"] == {"channel_id": broken["id"], "channel_name": "broken", "reason": shown["disabled_reason"]}

    assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
    assert (ups.calls("broken"), ups.calls("backup")) == (3, 4)  # disabled: no fourth call


async def test_a_call_that_works_resets_the_run(routed: tuple[Harness, Upstreams]) -> None:
    gw, ups = routed
    flaky = await ups.channel(gw, "flaky", scripted(401, 200, 401, 401, 401), priority=10)
    await ups.channel(gw, "backup", ok)
    _, key = await gw.account_with_key(credits=100)

    for _ in range(4):  # 401, success, 401, 401
        assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
    shown = await channel(gw, flaky["id"])
    assert (shown["enabled"], shown["disabled_reason"], shown["credential_failures"]) == (True, None, 2)
    assert await disabled_alerts(gw) == []

    assert (await gw.generate(key, {"prompt": "x"})).status_code == 200  # the third 401 in a row
    assert (await channel(gw, flaky["id"]))["enabled"] is False


async def test_other_failures_neither_count_nor_disable(routed: tuple[Harness, Upstreams]) -> None:
    gw, ups = routed
    overloaded = await ups.channel(gw, "overloaded", status(503), priority=10)
    await ups.channel(gw, "backup", ok)
    _, key = await gw.account_with_key(credits=100)

    for _ in range(4):
        assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
    shown = await channel(gw, overloaded["id"])
    assert (shown["enabled"], shown["credential_failures"]) == (True, 0)
    assert ups.calls("overloaded") == 4


async def test_the_only_channel_refusing_is_a_502_that_says_why_and_is_disabled_too(
    routed: tuple[Harness, Upstreams],
) -> None:
    gw, ups = routed
    only = await ups.channel(gw, "only", status(401))
    account_id, key = await gw.account_with_key(credits=100)

    for _ in range(3):
        response = await gw.generate(key, {"prompt": "x"})
        assert response.status_code == 502, response.text
        assert "credentials" in response.json()["error"]["message"]
        assert response.headers["x-should-retry"] == "false"
    assert (await channel(gw, only["id"]))["enabled"] is False
    assert (await gw.generate(key, {"prompt": "x"})).status_code == 503  # no channel serves imagen4 now
    assert (await gw.account(account_id))["balance"] == "100"


async def test_an_operator_re_enables_the_channel_and_it_starts_afresh(routed: tuple[Harness, Upstreams]) -> None:
    gw, ups = routed
    broken = await ups.channel(gw, "broken", status(401), priority=10)
    await ups.channel(gw, "backup", ok)
    _, key = await gw.account_with_key(credits=100)
    for _ in range(3):
        assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
    shown = await channel(gw, broken["id"])
    assert shown["enabled"] is False

    ups.behaviour["broken"] = ok  # the operator fixed the key upstream
    shown["enabled"] = True  # and sends back what GET showed: the read-only fields are ignored
    patched = await gw.admin("PATCH", f"/admin/channels/{broken['id']}", json=shown)

    assert patched.status_code == 200, patched.text
    assert (patched.json()["enabled"], patched.json()["disabled_reason"], patched.json()["credential_failures"]) == (
        True,
        None,
        0,
    )
    assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
    assert ups.calls("broken") == 4  # priority routes to it again
    assert len(await disabled_alerts(gw)) == 1


async def test_two_replicas_seeing_the_refusals_at_once_disable_the_channel_once(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with running_app(settings) as first, running_app(settings) as second:
        local = await first.local_channel()
        await first.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
        ups = Upstreams(upstream)
        broken = await ups.channel(first, "broken", status(401), priority=10)
        await ups.channel(first, "backup", ok)
        _, key = await first.account_with_key(credits=1000)
        second.gateway.invalidate_caches()

        answers = await asyncio.gather(
            *(gw.generate(key, {"prompt": f"p{i}"}) for i in range(6) for gw in (first, second))
        )

        assert [a.status_code for a in answers] == [200] * 12
        for gw in (first, second):
            assert (await channel(gw, broken["id"]))["enabled"] is False
        assert len(await disabled_alerts(first)) == 1
