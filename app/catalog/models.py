from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Fixed4, UTCDateTime, utcnow


class CatalogModel(Base):
    """A model callers can ask for, with its price and what it can honour."""

    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    credits_per_image: Mapped[Decimal] = mapped_column(Fixed4)
    multiplier: Mapped[Decimal] = mapped_column(Fixed4, default=Decimal(1))
    max_images: Mapped[int] = mapped_column(Integer, default=4)
    max_prompt_chars: Mapped[int] = mapped_column(Integer, default=4000)
    aspect_ratios: Mapped[list[str]] = mapped_column(JSON)
    image_sizes: Mapped[list[str]] = mapped_column(JSON)
    parameters: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(String(500), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Provider options this catalog model stands for, passed to whichever adapter serves it
    # (e.g. Ideogram's {"rendering_speed": "TURBO"} for `ideogram-v3-turbo`).
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Channel(Base):
    """An upstream account that serves some models through one provider adapter."""

    __tablename__ = "channels"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    provider: Mapped[str] = mapped_column(String(40))
    base_url: Mapped[str] = mapped_column(String(500), default="")
    # Secrets live here and are never rendered by any API (see catalog.schemas.ChannelOut).
    auth: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # gateway model id -> upstream model id; "*" maps every catalog model to itself.
    models: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    multiplier: Mapped[Decimal] = mapped_column(Fixed4, default=Decimal(1))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    timeout_s: Mapped[float] = mapped_column(Float, default=120.0)
    max_concurrency: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # A timeout after the request was sent may still be generated (and billed) upstream; only
    # where the operator says so is such a request tried again on another channel.
    retry_ambiguous: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # upstream model id -> what the provider charges per image it returns, in its currency (a
    # decimal string): the upstream_cost of each attempt, for margins and reconciliation.
    costs: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Why the gateway disabled this channel by itself (credentials refused or model gone on
    # GATEWAY_AUTO_DISABLE_AFTER calls in a row), shown until an operator re-enables it.
    disabled_reason: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # Those calls in a row, counted across replicas; a call that works resets it.
    credential_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
