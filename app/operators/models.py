from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class Operator(Base):
    """A named admin identity with a role (admin | finance | viewer). Only a SHA-256 of its token
    is kept; the token is shown once. Revoked operators stay, so the audit log keeps its names."""

    __tablename__ = "operators"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditEntry(Base):
    """One admin change: who, what, and each changed field's value before and after (secrets as
    "***"). Append-only, written in the transaction of the change itself."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_at", "at"),
        Index("ix_audit_entity", "entity", "entity_id", "at"),
        Index("ix_audit_actor", "actor", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))  # create | update | delete | grant | …
    entity: Mapped[str] = mapped_column(String(40))  # account | key | model | channel | operator | …
    entity_id: Mapped[str] = mapped_column(String(120))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # field → [before, after]
