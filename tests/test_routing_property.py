"""A randomized run: 500 requests while channels fail at random. Whatever happens, nobody pays
for a failed request, no hold stays open, and the books balance."""

from __future__ import annotations

import asyncio
import csv
import io
import random
from collections import defaultdict
from decimal import Decimal

from app.settings import Settings
from tests.support.fakes.channels import Upstreams
from tests.support.fakes.upstream import FakeUpstream, Reply, tiny_png_b64
from tests.support.harness import running_app

SEED = 20261120
REQUESTS = 500


def chaos(rng: random.Random) -> Reply:
    """One upstream answer, drawn from what real providers do on a bad day."""
    roll = rng.random()
    image = {"bytesBase64Encoded": tiny_png_b64(), "mimeType": "image/png"}
    if roll < 0.45:
        return Reply(json={"predictions": [image] * rng.randint(1, 2)})
    if roll < 0.55:
        return Reply(json={"predictions": [image, {"raiFilteredReason": "filtered"}]})
    if roll < 0.62:
        return Reply(json={})  # all filtered
    if roll < 0.72:
        return Reply(500, {"error": {"code": 500, "message": "boom", "status": "INTERNAL"}})
    if roll < 0.80:
        return Reply(503, {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})
    if roll < 0.86:
        return Reply(429, {"error": {"code": 429, "message": "quota", "status": "X"}}, headers={"retry-after": "1"})
    if roll < 0.90:
        return Reply(400, {"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}})
    if roll < 0.95:
        return Reply(body=b"<html>oops</html>")
    return Reply(json={"predictions": [image]}, delay_s=2.0)  # past the channel timeout


async def test_randomized_failures_never_charge_for_failure(settings: Settings, upstream: FakeUpstream) -> None:
    rng = random.Random(SEED)
    tuned = settings.model_copy(update={"breaker_failures": 4, "breaker_cooldown_s": 0.2})
    async with running_app(tuned) as gw:
        local = await gw.local_channel()
        await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
        ups = Upstreams(upstream)
        for name, multiplier in (("a", "1"), ("b", "1.5"), ("c", "0.75")):
            await ups.channel(
                gw,
                name,
                lambda _r: chaos(rng),
                multiplier=multiplier,
                timeout_s=1.0,
                retry_ambiguous=name == "c",
            )
        accounts = [await gw.account_with_key(credits=2000) for _ in range(5)]
        semaphore = asyncio.Semaphore(25)
        charged: dict[str, Decimal] = defaultdict(Decimal)
        statuses: dict[int, int] = defaultdict(int)

        async def one(i: int) -> None:
            account_id, key = accounts[i % len(accounts)]
            async with semaphore:
                response = await gw.generate(key, {"prompt": f"p{i}", "n": 1 + i % 2})
            statuses[response.status_code] += 1
            if response.status_code == 200:
                charged[account_id] += Decimal(response.json()["billing"]["credits"])
            else:
                assert response.status_code in (400, 429, 502, 503, 504), response.text

        await asyncio.gather(*(one(i) for i in range(REQUESTS)))

        # Enough of each kind of outcome happened for the run to mean something.
        assert statuses[200] > 50 and sum(statuses.values()) == REQUESTS, dict(statuses)
        for account_id, _ in accounts:
            account = await gw.account(account_id)
            assert account["held"] == "0"
            assert Decimal(account["balance"]) == 2000 - charged[account_id]
        rows = list(csv.DictReader(io.StringIO((await gw.admin("GET", "/admin/usage/export")).text)))
        assert len(rows) == REQUESTS
        assert sum(1 for r in rows if r["status"] == "succeeded") == statuses[200]
        assert all(r["credits"] == "0" for r in rows if r["status"] != "succeeded")
        assert {r["status"] for r in rows} <= {"succeeded", "failed", "filtered"}
        assert await gw.ledger_problems() == []
