"""Per-key limits: rpm and concurrency on memory and Redis storage, and the credit cap on a real DB."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

import pytest
from redis.asyncio import Redis

from app.billing import holds
from app.errors import InsufficientCredits, RateLimited
from app.keys.auth import Caller
from app.keys.limits import KeyLimiter, check_credit_cap
from tests.support.databases import REDIS_URL
from tests.support.harness import Harness
from tests.support.holds import hold_terms, served

MakeLimiter = Callable[..., KeyLimiter]


def _caller(
    key_id: str = "key_a", *, rpm: int | None = None, max_concurrency: int | None = None, cap: Decimal | None = None
) -> Caller:
    return Caller(
        key_id=key_id,
        account_id="acc_a",
        key_name="test",
        prefix="igw_test",
        models=None,
        rpm=rpm,
        max_concurrency=max_concurrency,
        credit_cap=cap,
        expires_at=None,
        revoked=False,
    )


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request: pytest.FixtureRequest) -> AsyncIterator[MakeLimiter]:
    """Builds limiters on one storage; on Redis under a fresh key prefix, deleted afterwards."""
    prefix = f"igw:test:{secrets.token_hex(4)}:"
    made: list[KeyLimiter] = []

    def make(**kwargs: float) -> KeyLimiter:
        url = REDIS_URL if request.param == "redis" else None
        limiter = KeyLimiter(url, prefix=prefix, **kwargs)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()
    if request.param == "redis":
        await _delete_keys(prefix)


async def _refused(admit: Awaitable[object]) -> RateLimited:
    with pytest.raises(RateLimited) as refused:
        await admit
    assert refused.value.status == 429
    assert refused.value.code == "rate_limited"
    return refused.value


async def test_rpm_admits_the_allowance_then_asks_to_retry_within_the_minute(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    caller = _caller(rpm=3)
    for _ in range(3):
        await limiter.admit(caller)
    error = await _refused(limiter.admit(caller))
    assert "3 request(s) per minute" in error.message
    assert 1 <= int(error.headers["Retry-After"]) <= 60
    # Another key has its own allowance.
    await limiter.admit(_caller("key_b", rpm=3))


async def test_concurrency_slots_come_back_on_release(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    caller = _caller(max_concurrency=2)
    first = await limiter.admit(caller)
    await limiter.admit(caller)
    error = await _refused(limiter.admit(caller))
    assert "2 request(s) in flight" in error.message
    assert error.headers["Retry-After"] == "1"

    await first.release()
    await first.release()  # a second release must not free somebody else's slot
    await limiter.admit(caller)
    await _refused(limiter.admit(caller))


async def test_a_refusal_for_one_limit_does_not_spend_the_other(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    caller = _caller(rpm=2, max_concurrency=1)
    running = await limiter.admit(caller)
    assert "in flight" in (await _refused(limiter.admit(caller))).message
    await running.release()
    # The refused request did not count against the minute: the allowance still has one left.
    await (await limiter.admit(caller)).release()
    assert "per minute" in (await _refused(limiter.admit(caller))).message
    # ...and the request refused for rpm gave its concurrency slot back.
    await limiter.admit(_caller(max_concurrency=1))


async def test_leases_never_released_expire(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(lease_ttl_s=2.0)
    caller = _caller(max_concurrency=1)
    await limiter.admit(caller)  # the lease is dropped without release(), as by a lost task
    await _refused(limiter.admit(caller))
    await asyncio.sleep(2.2)
    await limiter.admit(caller)


async def test_unlimited_keys_are_always_admitted(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    leases = [await limiter.admit(_caller()) for _ in range(50)]
    for lease in leases:
        await lease.release()


async def test_replicas_share_one_limit_through_redis() -> None:
    prefix = f"igw:test:{secrets.token_hex(4)}:"
    one, two = KeyLimiter(REDIS_URL, prefix=prefix), KeyLimiter(REDIS_URL, prefix=prefix)
    try:
        rpm = _caller("key_rpm", rpm=2)
        await one.admit(rpm)
        await two.admit(rpm)
        await _refused(one.admit(rpm))
        await _refused(two.admit(rpm))

        concurrent = _caller("key_conc", max_concurrency=1)
        lease = await one.admit(concurrent)
        await _refused(two.admit(concurrent))
        await lease.release()
        await two.admit(concurrent)
    finally:
        await one.aclose()
        await two.aclose()
        await _delete_keys(prefix)


async def test_a_crashed_replicas_leases_expire_for_the_others() -> None:
    prefix = f"igw:test:{secrets.token_hex(4)}:"
    crashed, survivor = KeyLimiter(REDIS_URL, prefix=prefix, lease_ttl_s=2.0), KeyLimiter(REDIS_URL, prefix=prefix)
    try:
        caller = _caller(max_concurrency=2)
        await crashed.admit(caller)
        await crashed.admit(caller)
        await crashed.aclose()  # the process is gone; nobody will release its leases
        await _refused(survivor.admit(caller))
        await asyncio.sleep(
            2.2
        )  # past the crashed replica's lease TTL; generous so a loaded machine cannot expire them early
        await survivor.admit(caller)
        await survivor.admit(caller)
    finally:
        await survivor.aclose()
        await _delete_keys(prefix)


async def _delete_keys(prefix: str) -> None:
    redis = Redis.from_url(REDIS_URL)
    keys = [key async for key in redis.scan_iter(match=prefix + "*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_credit_cap_counts_charges_and_open_holds_of_that_key(gw: Harness) -> None:
    account = await gw.create_account(credits=1000)
    created = await gw.admin(
        "POST", "/admin/keys", json={"account_id": account["id"], "name": "capped", "credit_cap": "20"}
    )
    assert created.status_code == 201, created.text
    caller = await gw.gateway.keys.lookup(created.json()["key"])
    assert caller is not None and caller.credit_cap == Decimal(20)
    db = gw.gateway.db

    charged, failed, running = (hold_terms(account["id"], "8", key_id=caller.key_id) for _ in range(3))
    other_key = hold_terms(account["id"], "500", key_id="key_other")
    async with db.transaction() as session:
        for terms in (charged, failed, running, other_key):
            await holds.place_hold(session, terms)
        await holds.capture(session, charged.request_id, served("8"))
        await holds.release(session, failed.request_id, "failed", served("0", 0))
        await holds.capture(session, other_key.request_id, served("500"))

    # 8 charged + 8 held: exactly 4 more fit under the cap of 20; failures and other keys don't count.
    async with db.transaction() as session:
        await check_credit_cap(session, caller, Decimal(4))
    with pytest.raises(InsufficientCredits, match=r"cap is 20 credits: it has spent 8 and holds 8"):
        async with db.transaction() as session:
            await check_credit_cap(session, caller, Decimal("4.0001"))

    async with db.transaction() as session:
        await holds.release(session, running.request_id, "canceled", served("0", 0))
        await check_credit_cap(session, caller, Decimal(12))
    uncapped = await gw.gateway.keys.lookup(await gw.create_key(account["id"]))
    assert uncapped is not None
    async with db.transaction() as session:
        await check_credit_cap(session, uncapped, Decimal(900))


async def test_key_limits_through_the_api(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=1000, rpm=2)
    codes = [(await gw.generate(key, {"prompt": "x"})).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    limited = await gw.generate(key, {"prompt": "x"})
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 120
    capped_key = await gw.create_key(account_id, credit_cap="20")
    assert (await gw.generate(capped_key, {"prompt": "x", "n": 2})).status_code == 200  # 16 of 20
    over = await gw.generate(capped_key, {"prompt": "x"})
    assert over.status_code == 402
    assert (await gw.account(account_id))["balance"] == str(1000 - 16 - 16)
    assert await gw.ledger_problems() == []
