from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class Alert(Base):
    """One event to announce at GATEWAY_ALERT_URL: an outbox row, written in the transaction that
    noticed the event and delivered (with retries) by whichever replica claims it.

    `dedupe_key` names the crossing ("account.low_balance:acc_…:<instant>", "budget.threshold:key_…:
    month:2026-12-01:80"): the unique index makes "once per crossing" a database fact even when
    several replicas notice the same crossing.
    """

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_status_next", "status", "next_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # alrt_…, also the webhook-id
    type: Mapped[str] = mapped_column(String(40))  # account.low_balance | budget.threshold | channel.disabled
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
