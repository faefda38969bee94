from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class IdempotentRequest(Base):
    """The first request made with an `Idempotency-Key`, and once it succeeded, its response.

    Images are kept as files (the response refers to them by id), never as base64 in the database.
    """

    __tablename__ = "idempotent_requests"
    __table_args__ = (Index("ix_idempotent_expires", "expires_at"),)

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the route and the body
    state: Mapped[str] = mapped_column(String(20))  # running | done
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime)  # a crashed runner's claim lapses
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
