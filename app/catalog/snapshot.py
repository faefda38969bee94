"""An immutable in-memory view of the catalog and channels, refreshed every few seconds.

The hot path reads models, aliases and channels from here instead of the database, so a
generation request costs no catalog queries. Admin changes invalidate the local snapshot at once;
other replicas pick them up when their snapshot ages out (`GATEWAY_CACHE_TTL_S`, 2 s by default).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation

from sqlalchemy import select

from app.catalog.models import CatalogModel, Channel
from app.catalog.secrets import SECRET_AUTH_FIELDS, SecretCipher, UnreadableSecret
from app.db import Database
from app.specs import CatalogSnapshot, ChannelSpec, ModelSpec

log = logging.getLogger("app.catalog")

_FOUR_PLACES = Decimal("0.0001")  # upstream_cost is stored with four places, like credits
_MAX_COST = Decimal(1_000_000)  # per image: keeps cost × images far inside the column


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
        options={str(name): str(value) for name, value in (row.options or {}).items()},
    )


def channel_spec(row: Channel, cipher: SecretCipher) -> ChannelSpec:
    """The channel with its secrets decrypted, or, if one cannot be, without them and unusable."""
    unusable = None
    try:
        auth = cipher.open_auth(row.auth or {})
    except UnreadableSecret as unreadable:
        unusable = str(unreadable)
        auth = {k: v for k, v in (row.auth or {}).items() if k not in SECRET_AUTH_FIELDS}
    return ChannelSpec(
        id=row.id,
        name=row.name,
        provider=row.provider,
        base_url=row.base_url,
        auth=auth,
        models=dict(row.models or {}),
        priority=row.priority,
        weight=row.weight,
        multiplier=row.multiplier,
        enabled=row.enabled,
        timeout_s=row.timeout_s,
        max_concurrency=row.max_concurrency,
        retry_ambiguous=row.retry_ambiguous,
        unusable=unusable,
        costs=_costs(row),
        credential_failures=row.credential_failures,
    )


def _costs(row: Channel) -> dict[str, Decimal]:
    """The channel's costs as Decimals, parsed once per reload so the hot path only multiplies.

    The admin API stores only valid costs; one written some other way that is not a non-negative
    amount of at most four places is left out (its attempts get no cost) rather than failing
    every settlement on that channel.
    """
    costs: dict[str, Decimal] = {}
    for upstream, text in (row.costs or {}).items():
        try:
            cost = Decimal(str(text))
        except InvalidOperation:
            cost = Decimal(-1)
        if cost.is_finite() and 0 <= cost < _MAX_COST and cost == cost.quantize(_FOUR_PLACES):
            costs[upstream] = cost
        else:
            log.error("channel %s (%s): ignoring cost %r for %r", row.name, row.id, text, upstream)
    return costs


async def load_snapshot(db: Database, cipher: SecretCipher) -> CatalogSnapshot:
    async with db.sessions() as session:
        model_rows = (await session.scalars(select(CatalogModel))).all()
        channel_rows = (await session.scalars(select(Channel).order_by(Channel.created_at, Channel.id))).all()
    models = {row.id: model_spec(row) for row in model_rows}
    aliases = {alias: spec.id for spec in models.values() for alias in spec.aliases}
    channels = tuple(channel_spec(row, cipher) for row in channel_rows)
    return CatalogSnapshot(models=models, channels=channels, aliases=aliases)


class CatalogCache:
    def __init__(
        self,
        db: Database,
        ttl_s: float,
        cipher: SecretCipher,
        on_reload: Callable[[CatalogSnapshot], Awaitable[None]] | None = None,
    ) -> None:
        self._db = db
        # Told of every freshly loaded snapshot before anyone uses it (log redaction learns the
        # channels' current secrets from it).
        self._on_reload = on_reload
        self._ttl_s = ttl_s
        self._cipher = cipher  # secrets are decrypted once per reload, never per request
        self._reported_unusable: frozenset[tuple[str, str]] = frozenset()
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
            snapshot = await load_snapshot(self._db, self._cipher)
            if self._on_reload is not None:
                await self._on_reload(snapshot)
            self._snapshot = snapshot
            self._loaded_at = time.monotonic()
            self._report_unusable(self._snapshot)
            return self._snapshot

    def _report_unusable(self, snapshot: CatalogSnapshot) -> None:
        """Log each unusable channel once (not on every reload), again if it breaks anew."""
        unusable = frozenset((c.id, c.unusable) for c in snapshot.channels if c.unusable)
        for channel in snapshot.channels:
            if channel.unusable and (channel.id, channel.unusable) not in self._reported_unusable:
                log.error(
                    "channel %s (%s) is unusable and skipped by routing: %s; see `image-gateway secrets check`",
                    channel.name,
                    channel.id,
                    channel.unusable,
                )
        self._reported_unusable = unusable

    def invalidate(self) -> None:
        self._loaded_at = 0.0
