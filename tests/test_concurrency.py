"""Concurrent requests can never take an account below zero, on either database."""

from __future__ import annotations

import asyncio

from tests.support.harness import Harness


async def test_24_concurrent_requests_against_5_requests_of_credit(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=40)  # 5 × imagen4 at 8 credits

    responses = await asyncio.gather(*(gw.generate(key, {"prompt": f"cat {i}"}) for i in range(24)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 5, statuses
    assert statuses.count(402) == 19, statuses
    account = await gw.account(account_id)
    assert (account["balance"], account["held"], account["available"]) == ("0", "0", "0")
    assert await gw.ledger_problems() == []


async def test_concurrent_grants_and_spending_balance(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=16)

    async def grant() -> int:
        response = await gw.admin(
            "POST", f"/admin/accounts/{account_id}/credits", json={"amount": "8", "note": "top-up"}
        )
        return response.status_code

    results = await asyncio.gather(*(gw.generate(key, {"prompt": "x"}) for _ in range(6)), *(grant() for _ in range(4)))
    generated = sum(1 for r in results[:6] if getattr(r, "status_code", None) == 200)
    assert all(code == 200 for code in results[6:])
    account = await gw.account(account_id)
    assert account["balance"] == str(16 + 32 - 8 * generated)
    assert account["held"] == "0"
    assert await gw.ledger_problems() == []
