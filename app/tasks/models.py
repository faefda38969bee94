from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class Task(Base):
    """An asynchronous generation: queued at submission (its credits already held), claimed by a
    worker under a lease, finished with files and a charge, then announced by callback."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_claim", "status", "created_at"),
        Index("ix_tasks_callback", "callback_status", "callback_next_at"),
        Index("ix_tasks_expires", "expires_at"),
        Index("ix_tasks_account_created", "account_id", "created_at"),  # GET /v1/tasks, newest first
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    key_id: Mapped[str] = mapped_column(String(40))
    request_id: Mapped[str] = mapped_column(String(40), unique=True)  # the usage record holding its credits
    model: Mapped[str] = mapped_column(String(120))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)  # the canonical ImageRequest
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|running|succeeded|failed|canceled
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(80), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    billing: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    task_metadata: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    public_base: Mapped[str] = mapped_column(String(500))  # where file URLs point when no public URL is set
    callback_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    webhook_id: Mapped[str | None] = mapped_column(String(60), nullable=True)
    callback_status: Mapped[str | None] = mapped_column(String(20), nullable=True)  # pending|delivered|failed
    callback_attempts: Mapped[int] = mapped_column(Integer, default=0)
    callback_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    callback_last_error: Mapped[str | None] = mapped_column(String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
