"""Named operators: created with a role, their token shown once and kept as a SHA-256 digest,
revoked (never deleted, so the audit log keeps their names). Never commits."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database, new_id, utcnow
from app.errors import Conflict, InvalidValue, NotFound
from app.operators.models import Operator
from app.operators.roles import ROLES, ROOT

# Distinct from gateway keys ("igw_…"), so a key sent to the admin API can be told apart.
TOKEN_PREFIX = "igwop_"  # noqa: S105 - a public prefix, not a secret


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling the admin API: the root token or a named operator."""

    name: str
    role: str
    operator_id: str | None = None  # None for the root token


ROOT_IDENTITY = Identity(name=ROOT, role="admin")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_operator(session: AsyncSession, name: str, role: str) -> tuple[Operator, str]:
    """The stored operator and its token, which exists nowhere else after this call."""
    name = name.strip()
    if not name:
        raise InvalidValue("name must not be empty.", param="name")
    if name == ROOT:
        raise InvalidValue(f"{ROOT!r} is the root token's name; choose another.", param="name")
    if role not in ROLES:
        raise InvalidValue(f"role must be one of {', '.join(ROLES)}, not {role!r}.", param="role")
    if await session.scalar(select(Operator.id).where(Operator.name == name)) is not None:
        raise Conflict(f"An operator named {name!r} exists already.", param="name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    operator = Operator(id=new_id("op"), name=name, role=role, token_hash=token_hash(token), created_at=utcnow())
    session.add(operator)
    await session.flush()
    return operator, token


async def list_operators(session: AsyncSession, *, include_revoked: bool = False) -> Sequence[Operator]:
    query = select(Operator).order_by(Operator.created_at, Operator.id)
    if not include_revoked:
        query = query.where(Operator.revoked_at.is_(None))
    return (await session.scalars(query)).all()


async def find_operator(session: AsyncSession, ref: str) -> Operator:
    """By id, else by name."""
    operator = await session.get(Operator, ref)
    if operator is None:
        operator = await session.scalar(select(Operator).where(Operator.name == ref))
    if operator is None:
        raise NotFound(f"No operator with id or name {ref!r}.")
    return operator


async def revoke_operator(session: AsyncSession, ref: str) -> Operator:
    operator = await find_operator(session, ref)
    if operator.revoked_at is None:
        operator.revoked_at = utcnow()
        await session.flush()
    return operator


class OperatorCache:
    """Operator tokens → identities, cached for GATEWAY_CACHE_TTL_S like gateway keys; a revocation
    on this replica clears it at once, on others within the TTL."""

    def __init__(self, db: Database, ttl_s: float) -> None:
        self._db = db
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Identity | None]] = {}

    async def lookup(self, token: str) -> Identity | None:
        digest = token_hash(token)
        hit = self._entries.get(digest)
        if hit is not None and time.monotonic() < hit[0]:
            return hit[1]
        async with self._db.sessions() as session:
            row = (
                await session.execute(
                    select(Operator.id, Operator.name, Operator.role).where(
                        Operator.token_hash == digest, Operator.revoked_at.is_(None)
                    )
                )
            ).first()
        identity = None if row is None else Identity(name=row.name, role=row.role, operator_id=row.id)
        if identity is not None:  # unknown tokens are not cached: a new operator must work at once
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (time.monotonic() + self._ttl_s, identity)
        return identity

    def invalidate(self) -> None:
        self._entries.clear()
