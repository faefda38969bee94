"""An upstream's Retry-After is data from outside: whatever it says, a 429 stays a rate limit that
cools its channel and fails over, never a 500."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from app.providers.upstream_http import MAX_UPSTREAM_RETRY_AFTER_S, retry_after
from app.settings import Settings
from tests.support.fakes.channels import Upstreams, ok, status
from tests.support.fakes.upstream import FakeUpstream
from tests.support.harness import Harness, running_app

UNPARSEABLE = [
    "60s",
    "soon",
    "0x10",
    "120, 60",
    "Wed, 32 Foo 2026 25:61:00 GMT",
    "Wed, 21 Oct 99999 07:28:00 GMT",
    "-5",
    "1.5",
    "1e400",
    "inf",
    "nan",
    "²",
    "٣٠",  # Arabic-Indic digits: str.isdigit() says yes, RFC 9110 says no
]
HUGE = ["9" * 5000, "99999999999999999999"]


@pytest.mark.parametrize("value", UNPARSEABLE)
def test_an_unparseable_retry_after_is_unknown(value: str) -> None:
    assert retry_after(httpx.Headers([(b"retry-after", value.encode())])) is None


@pytest.mark.parametrize("value", HUGE)
def test_a_huge_retry_after_is_clamped(value: str) -> None:
    assert retry_after(httpx.Headers({"retry-after": value})) == MAX_UPSTREAM_RETRY_AFTER_S


def test_valid_retry_after_values() -> None:
    assert retry_after(httpx.Headers({"retry-after": "30"})) == 30
    assert retry_after(httpx.Headers({"retry-after": "0"})) == 0
    assert retry_after(httpx.Headers({})) is None
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    parsed = retry_after(httpx.Headers({"retry-after": soon}))
    assert parsed is not None and 80 <= parsed <= 90
    assert retry_after(httpx.Headers({"retry-after": "Sun, 06 Nov 1994 08:49:37 GMT"})) == 0
    # RFC 9110's obsolete forms (RFC 850 and asctime) are still HTTP-dates.
    assert retry_after(httpx.Headers({"retry-after": "Sunday, 06-Nov-94 08:49:37 GMT"})) == 0
    assert retry_after(httpx.Headers({"retry-after": "Sun Nov  6 08:49:37 1994"})) == 0


@pytest.fixture
async def routed(settings: Settings, upstream: FakeUpstream) -> AsyncIterator[tuple[Harness, Upstreams]]:
    async with running_app(settings) as gw:
        local = await gw.local_channel()
        await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
        yield gw, Upstreams(upstream)


async def test_a_429_with_any_retry_after_fails_over_and_cools_the_channel(
    routed: tuple[Harness, Upstreams],
) -> None:
    gw, ups = routed
    await ups.channel(gw, "healthy", ok, priority=0)
    account_id, key = await gw.account_with_key(credits=1000)

    # The fake server sends header values as Latin-1, as HTTP/1.1 servers do.
    sent = [value for value in [*UNPARSEABLE, *HUGE] if value.isascii() or value == "²"]
    for index, value in enumerate(sent):
        name = f"limited{index}"
        limited = await ups.channel(gw, name, status(429, **{"retry-after": value}), priority=10)

        response = await gw.generate(key, {"prompt": "x"})

        assert response.status_code == 200, (value[:20], response.text)
        assert len(response.json()["data"]) == 1
        assert ups.calls(name) == 1
        health = (await gw.admin("GET", f"/admin/channels/{limited['id']}")).json()["health"]
        assert health["state"] == "cooling", value[:20]
    assert (await gw.account(account_id))["balance"] == str(1000 - 8 * len(sent))
    assert await gw.ledger_problems() == []


@pytest.mark.parametrize("value", ["inf", "1e400", "nan", "9" * 5000, "soon"])
async def test_when_every_channel_is_rate_limited_the_caller_gets_a_sane_retry_after(
    routed: tuple[Harness, Upstreams], value: str
) -> None:
    gw, ups = routed
    await ups.channel(gw, "only", status(429, **{"retry-after": value}))
    account_id, key = await gw.account_with_key(credits=100)

    started = time.monotonic()
    response = await gw.generate(key, {"prompt": "x"})

    assert time.monotonic() - started < 10
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= 120
    assert (await gw.account(account_id))["balance"] == "100"
