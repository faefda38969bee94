"""`Idempotency-Key`: the same key and body within 24 h replays the first response without a
second charge or upstream call; another body is 422; while the first still runs, 409.

Keys are scoped to the account. Only a response that delivered something (images, a queued task)
is kept for replay: a failure charged nothing, so the key is freed and a retry runs afresh.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from app.db import Database, utcnow
from app.errors import GatewayError
from app.idempotency.models import IdempotentRequest

TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255


class IdempotencyKeyInUse(GatewayError):
    status = 409
    code = "idempotency_key_in_use"


class IdempotencyKeyReused(GatewayError):
    status = 422
    code = "idempotency_key_reused"


@dataclass(frozen=True)
class Claim:
    account_id: str
    key: str


@dataclass(frozen=True)
class Replay:
    status_code: int
    response: dict[str, Any]


def fingerprint(path: str, body: bytes) -> str:
    return hashlib.sha256(path.encode() + b"\0" + body).hexdigest()


async def begin(db: Database, account_id: str, key: str, print_: str, run_for: timedelta) -> Claim | Replay:
    """Claim the key for this request, or say what the earlier request with it came to."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise GatewayError(f"Idempotency-Key must be 1–{MAX_KEY_LENGTH} characters.", param="Idempotency-Key")
    for _ in range(3):
        now = utcnow()
        try:
            async with db.transaction() as session:
                row = await session.get(IdempotentRequest, (account_id, key))
                if row is not None and row.expires_at <= now:
                    await session.delete(row)
                    await session.flush()
                    row = None
                if row is None:
                    session.add(
                        IdempotentRequest(
                            account_id=account_id,
                            key=key,
                            fingerprint=print_,
                            state="running",
                            locked_until=now + run_for,
                            created_at=now,
                            expires_at=now + TTL,
                        )
                    )
                    await session.flush()
                    return Claim(account_id, key)
                if row.fingerprint != print_:
                    raise IdempotencyKeyReused(
                        "This Idempotency-Key was used with a different request body; use a new key.",
                        param="Idempotency-Key",
                    )
                if row.state == "done" and row.response is not None and row.status_code is not None:
                    return Replay(row.status_code, row.response)
                if row.locked_until > now:
                    raise IdempotencyKeyInUse(
                        "A request with this Idempotency-Key is still running; retry shortly.",
                        param="Idempotency-Key",
                        headers={"retry-after": "1"},
                    )
                # The request that claimed it died without an answer: this one takes over.
                row.locked_until = now + run_for
                return Claim(account_id, key)
        except IntegrityError:
            continue  # another request inserted it first; look again
    raise IdempotencyKeyInUse("A request with this Idempotency-Key is still running; retry shortly.")


async def complete(db: Database, claim: Claim, status_code: int, response: dict[str, Any]) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(IdempotentRequest)
            .where(IdempotentRequest.account_id == claim.account_id, IdempotentRequest.key == claim.key)
            .values(state="done", status_code=status_code, response=response)
            .execution_options(synchronize_session=False)
        )


async def abandon(db: Database, claim: Claim) -> None:
    async with db.transaction() as session:
        await session.execute(
            delete(IdempotentRequest).where(
                IdempotentRequest.account_id == claim.account_id,
                IdempotentRequest.key == claim.key,
                IdempotentRequest.state == "running",
            )
        )


async def purge_expired(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(delete(IdempotentRequest).where(IdempotentRequest.expires_at < utcnow()))
