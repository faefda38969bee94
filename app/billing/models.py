"""The money tables: accounts, their append-only ledger, and one usage record per request."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, false
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
    # A spending limit per UTC calendar period (day | week | month), enforced by the hold
    # (app/billing/budgets.py); both null = no budget.
    budget_credits: Mapped[Decimal | None] = mapped_column(Fixed4, nullable=True)
    budget_period: Mapped[str | None] = mapped_column(String(10), nullable=True)
    # An `account.low_balance` alert fires when available credits fall below this; the flag makes
    # it once per crossing (set with the alert, cleared when the balance is back above).
    alert_below: Mapped[Decimal | None] = mapped_column(Fixed4, nullable=True)
    low_balance_alerted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # After a rotation the previous secret still signs callbacks (a second signature) until
    # 24 hours after `webhook_secret_rotated_at`, so receivers can switch without losing any.
    previous_webhook_secret: Mapped[str | None] = mapped_column(String(80), nullable=True)
    webhook_secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class LedgerEntry(Base):
    """One append-only movement of an account's balance. Rows are never updated or deleted."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_account_created", "account_id", "created_at"),
        Index("ix_ledger_created", "created_at"),  # the ledger export of a period, every account
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(20))  # grant | adjustment | charge
    amount: Mapped[Decimal] = mapped_column(Fixed4)
    balance_after: Mapped[Decimal] = mapped_column(Fixed4)
    # A charge names its request; the unique index makes "settled exactly once" a database fact.
    request_id: Mapped[str | None] = mapped_column(String(40), unique=True, nullable=True)
    note: Mapped[str] = mapped_column(String(500), default="")
    actor: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsageRecord(Base):
    """One caller request: its hold while running, and afterwards the frozen facts of its bill.

    `status == "pending"` means the hold is open. Every other status is final, and the move out of
    pending is a compare-and-set, so a hold ends exactly once.
    """

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_account_created", "account_id", "created_at"),
        Index("ix_usage_status_created", "status", "created_at"),
        Index("ix_usage_status_hold_until", "status", "hold_until"),
        Index("ix_usage_key_status", "key_id", "status"),  # a key's credit cap sums its records
        Index("ix_usage_created", "created_at"),  # the request log, newest first
        Index("ix_usage_client_request", "client_request_id"),
        # Request log filters that may match few rows (a full scan of a year otherwise).
        Index("ix_usage_channel_created", "channel_id", "created_at"),
        Index("ix_usage_error_created", "error_code", "created_at"),
        Index("ix_usage_user_created", "user", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    key_id: Mapped[str] = mapped_column(String(40))
    endpoint: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    hold_credits: Mapped[Decimal] = mapped_column(Fixed4)
    unit_credits: Mapped[Decimal] = mapped_column(Fixed4)
    model_multiplier: Mapped[Decimal] = mapped_column(Fixed4)
    images_requested: Mapped[int] = mapped_column(Integer)
    # Filled at settlement: what actually served the request and what it cost.
    upstream_model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    channel_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    channel_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    provider: Mapped[str | None] = mapped_column(String(40), nullable=True)
    channel_multiplier: Mapped[Decimal | None] = mapped_column(Fixed4, nullable=True)
    images_delivered: Mapped[int] = mapped_column(Integer, default=0)
    credits: Mapped[Decimal] = mapped_column(Fixed4, default=Decimal(0))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    channels_tried: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(60), nullable=True)
    user: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The caller's own id for the request (X-Client-Request-Id), when it sent a usable one.
    client_request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    request_metadata: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # While pending: after this moment the hold belongs to a crashed process and is expired.
    # Synchronous requests get minutes; queued tasks keep theirs until their retention ends.
    hold_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The budget periods this request's hold counts against ("month:2026-12-01"), frozen when the
    # hold is placed so that ending it gives back to the same period, even after the period ends.
    account_budget_window: Mapped[str | None] = mapped_column(String(24), nullable=True)
    key_budget_window: Mapped[str | None] = mapped_column(String(24), nullable=True)


class UpstreamAttempt(Base):
    """One call to an upstream channel on behalf of a request: what the provider may bill us for.

    Written in the transaction that ends the request's hold (capture or release), so a request
    and its attempts appear together or not at all. `possibly_billed` is true when the upstream
    may have charged for the call: it succeeded (images or all filtered), or it timed out or broke
    off after the request was sent.
    """

    __tablename__ = "upstream_attempts"
    __table_args__ = (
        Index("ix_attempts_request", "request_id", "n"),
        Index("ix_attempts_started", "started_at"),
        Index("ix_attempts_channel_started", "channel_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # None for a channel test (POST /admin/channels/{id}/test): a real call the provider bills,
    # made for no request and charged to no account (account_id "").
    request_id: Mapped[str | None] = mapped_column(ForeignKey("usage_records.id"), nullable=True)
    account_id: Mapped[str] = mapped_column(String(40))
    n: Mapped[int] = mapped_column(Integer)  # 1 for the first attempt of the request
    channel_id: Mapped[str] = mapped_column(String(40))
    channel_name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(40))
    upstream_model: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    latency_ms: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(20))  # succeeded | failed | ambiguous | rejected
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(60), nullable=True)
    error: Mapped[str | None] = mapped_column(String(300), nullable=True)  # scrubbed of secrets
    images: Mapped[int] = mapped_column(Integer, default=0)  # returned by the upstream, filtered included
    possibly_billed: Mapped[bool] = mapped_column(Boolean, default=False)
    upstream_cost: Mapped[Decimal | None] = mapped_column(Fixed4, nullable=True)
    # The provider's own usage block for the call, when it sends one (token counts, units…).
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class BudgetSpend(Base):
    """What one account or key has spent, plus what it holds, in one budget period.

    `scope` is the account or key id (their prefixes keep them apart); `window` names the period
    ("day:2026-12-02", "week:2026-11-30", "month:2026-12-01"). A hold adds to `spent` with a
    conditional UPDATE that cannot pass the budget; ending the hold takes back what was not
    charged. `alerted` is the highest threshold (80, 100) already announced for this period.
    """

    __tablename__ = "budget_spend"

    scope: Mapped[str] = mapped_column(String(40), primary_key=True)
    window: Mapped[str] = mapped_column(String(24), primary_key=True)
    spent: Mapped[Decimal] = mapped_column(Fixed4, default=Decimal(0))
    alerted: Mapped[int] = mapped_column(Integer, default=0)
