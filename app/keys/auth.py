"""Authenticating callers: the gateway key from the request, checked against a short-lived cache.

Keys are looked up by digest and cached for `GATEWAY_CACHE_TTL_S`, so a request normally costs no
key query; revocation through the admin API on this replica clears the cache at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from starlette.requests import Request

from app.billing.budgets import Budget
from app.billing.models import Account
from app.db import Database, utcnow
from app.errors import InvalidApiKey
from app.keys.models import ApiKey
from app.keys.secrets import key_hash
from app.observability.logs import note

# The request's fact naming a caller whose key has an `rpm`.
RPM_CALLER_FACT = "rpm_caller"


@dataclass(frozen=True, slots=True)
class Caller:
    key_id: str
    account_id: str
    key_name: str
    prefix: str
    models: tuple[str, ...] | None
    rpm: int | None
    max_concurrency: int | None
    credit_cap: Decimal | None
    expires_at: datetime | None
    revoked: bool
    account_name: str = ""  # for log lines
    # The holds of this key's requests stay within these (app/billing/budget_holds.py).
    key_budget: Budget | None = None
    account_budget: Budget | None = None

    def may_use(self, model_id: str) -> bool:
        return self.models is None or model_id in self.models


def _budget(credits: Decimal | None, period: str | None) -> Budget | None:
    return Budget(credits, period) if credits is not None and period is not None else None


def _caller(row: ApiKey, account_name: str, account_budget: Budget | None) -> Caller:
    return Caller(
        key_id=row.id,
        account_id=row.account_id,
        key_name=row.name,
        prefix=row.prefix,
        models=tuple(row.models) if row.models is not None else None,
        rpm=row.rpm,
        max_concurrency=row.max_concurrency,
        credit_cap=row.credit_cap,
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
        account_name=account_name,
        key_budget=_budget(row.budget_credits, row.budget_period),
        account_budget=account_budget,
    )


class KeyCache:
    def __init__(self, db: Database, ttl_s: float) -> None:
        self._db = db
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Caller]] = {}

    async def lookup(self, secret: str) -> Caller | None:
        digest = key_hash(secret)
        hit = self._entries.get(digest)
        if hit is not None and time.monotonic() < hit[0]:
            return hit[1]
        async with self._db.sessions() as session:
            found = (
                await session.execute(
                    select(ApiKey, Account.name, Account.budget_credits, Account.budget_period)
                    .join(Account, Account.id == ApiKey.account_id)
                    .where(ApiKey.key_hash == digest)
                )
            ).first()
        if found is None:
            return None  # unknown keys are not cached: a key created a moment ago must work
        caller = _caller(found[0], found[1], _budget(found[2], found[3]))
        if len(self._entries) > 100_000:
            self._entries.clear()
        self._entries[digest] = (time.monotonic() + self._ttl_s, caller)
        return caller

    def invalidate(self) -> None:
        self._entries.clear()


def presented_key(request: Request, *, google: bool = False) -> str | None:
    """The key from `Authorization: Bearer`, or on Google-native routes `x-goog-api-key`/`?key=`."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if google:
        return request.headers.get("x-goog-api-key") or request.query_params.get("key") or None
    return None


async def authenticate(cache: KeyCache, request: Request, *, google: bool = False) -> Caller:
    secret = presented_key(request, google=google)
    if not secret:
        hint = "Authorization: Bearer <key>" + (", x-goog-api-key or ?key=" if google else "")
        raise InvalidApiKey(f"Missing API key. Send it as {hint}.")
    caller = await cache.lookup(secret)
    if caller is None:
        raise InvalidApiKey("Invalid API key.")
    if caller.revoked:
        raise InvalidApiKey("This API key has been revoked.")
    if caller.expires_at is not None and caller.expires_at <= utcnow():
        raise InvalidApiKey("This API key has expired.")
    note(account_id=caller.account_id, account_name=caller.account_name, key_prefix=caller.prefix)
    if caller.rpm is not None:
        # Its answer carries x-ratelimit-* headers, whichever route it reached (app/http/rate_limit_headers.py).
        note(**{RPM_CALLER_FACT: caller})
    return caller
