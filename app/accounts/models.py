from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Fixed4, UTCDateTime, utcnow


class Account(Base):
    """A team that holds credits. `balance` is what it owns; `held` is reserved by open holds."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("held >= 0", name="ck_accounts_held_nonnegative"),
        CheckConstraint("balance - held >= 0", name="ck_accounts_no_overdraft"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    balance: Mapped[Decimal] = mapped_column(Fixed4, default=Decimal(0))
    held: Mapped[Decimal] = mapped_column(Fixed4, default=Decimal(0))
    webhook_secret: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
