"""An immutable in-memory view of the catalog and channels, refreshed every few seconds.

The hot path reads models, aliases and channels from here instead of the database, so a
generation request costs no catalog queries. Admin changes invalidate the local snapshot at once;
other replicas pick them up when their snapshot ages out (`GATEWAY_CACHE_TTL_S`, 2 s by default).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from app.catalog.models import CatalogModel, Channel
from app.db import Database

WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    id: str
    aliases: tuple[str, ...]
    credits_per_image: Decimal
    multiplier: Decimal
    max_images: int
    max_prompt_chars: int
    aspect_ratios: tuple[str, ...]
    image_sizes: tuple[str, ...]
    parameters: tuple[str, ...]
    description: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    id: str
    name: str
    provider: str
    base_url: str
    auth: dict[str, Any]
    models: dict[str, str]
    priority: int
    weight: int
    multiplier: Decimal
    enabled: bool
    timeout_s: float
    max_concurrency: int | None
    retry_ambiguous: bool = False

    def upstream_model(self, model_id: str) -> str | None:
        """The upstream model this channel calls for a catalog model, or None if it does not serve it."""
        mapped = self.models.get(model_id)
        if mapped is None:
            mapped = self.models.get(WILDCARD)
        if mapped is None:
            return None
        return model_id if mapped == WILDCARD else mapped


@dataclass(frozen=True)
class CatalogSnapshot:
    models: dict[str, ModelSpec]
    channels: tuple[ChannelSpec, ...]
    aliases: dict[str, str] = field(default_factory=dict)

    def resolve(self, name: str) -> ModelSpec | None:
        model_id = name if name in self.models else self.aliases.get(name)
        return self.models.get(model_id) if model_id else None

    def channels_for(self, model_id: str) -> list[tuple[ChannelSpec, str]]:
        """Enabled channels that serve the model, each with its upstream model id."""
        served = []
        for channel in self.channels:
            upstream = channel.upstream_model(model_id) if channel.enabled else None
            if upstream is not None:
                served.append((channel, upstream))
        return served


def model_spec(row: CatalogModel) -> ModelSpec:
    return ModelSpec(
        id=row.id,
        aliases=tuple(row.aliases or ()),
        credits_per_image=row.credits_per_image,
        multiplier=row.multiplier,
        max_images=row.max_images,
        max_prompt_chars=row.max_prompt_chars,
        aspect_ratios=tuple(row.aspect_ratios),
        image_sizes=tuple(row.image_sizes),
        parameters=tuple(row.parameters or ()),
        description=row.description,
        enabled=row.enabled,
    )


def channel_spec(row: Channel) -> ChannelSpec:
    return ChannelSpec(
        id=row.id,
        name=row.name,
        provider=row.provider,
        base_url=row.base_url,
        auth=dict(row.auth or {}),
        models=dict(row.models or {}),
        priority=row.priority,
        weight=row.weight,
        multiplier=row.multiplier,
        enabled=row.enabled,
        timeout_s=row.timeout_s,
        max_concurrency=row.max_concurrency,
        retry_ambiguous=row.retry_ambiguous,
    )


async def load_snapshot(db: Database) -> CatalogSnapshot:
    async with db.sessions() as session:
        model_rows = (await session.scalars(select(CatalogModel))).all()
        channel_rows = (await session.scalars(select(Channel).order_by(Channel.created_at, Channel.id))).all()
    models = {row.id: model_spec(row) for row in model_rows}
    aliases = {alias: spec.id for spec in models.values() for alias in spec.aliases}
    return CatalogSnapshot(models=models, channels=tuple(channel_spec(r) for r in channel_rows), aliases=aliases)


class CatalogCache:
    def __init__(self, db: Database, ttl_s: float) -> None:
        self._db = db
        self._ttl_s = ttl_s
        self._snapshot: CatalogSnapshot | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> CatalogSnapshot:
        snapshot = self._snapshot
        if snapshot is not None and time.monotonic() - self._loaded_at < self._ttl_s:
            return snapshot
        async with self._lock:  # one reload at a time; waiters reuse its result
            if self._snapshot is not None and time.monotonic() - self._loaded_at < self._ttl_s:
                return self._snapshot
            self._snapshot = await load_snapshot(self._db)
            self._loaded_at = time.monotonic()
            return self._snapshot

    def invalidate(self) -> None:
        self._loaded_at = 0.0
