"""Delivering queued alerts: a Standard-Webhooks-signed POST to GATEWAY_ALERT_URL, retried on the
callbacks' schedule until the receiver answers 2xx, then `delivered`; after the last retry `failed`.

Any number of replicas run this loop against one database. A replica claims due rows in one short
transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises the same
statement) by pushing `next_at` past the time a delivery can take, so no other replica sends the
same alert while it is out. The alert id is the `webhook-id` of every attempt: a receiver whose 2xx
was lost in transit sees the retry under the same id and drops it.

The URL goes through the callbacks' SSRF guard on every attempt (DNS may change) and the
connection goes to the address that was checked; a refused URL is a failed attempt like any other.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import select, update

from app.alerts.models import Alert
from app.callbacks.delivery import DeliveryOutcome, guarded_deliver
from app.callbacks.schedule import CLAIM_S, DELIVERY_TIMEOUT_S, retry_delay_s
from app.callbacks.signing import webhook_headers
from app.db import Database, utcnow
from app.net.ssrf import Networks, Resolver

log = logging.getLogger("app.alerts")
USER_AGENT = "image-gateway-alerts/1"


@dataclass(frozen=True)
class AlertEndpoint:
    """Where alerts go (GATEWAY_ALERT_URL) and the `whsec_…` secret that signs them."""

    url: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class _Claimed:
    id: str
    type: str
    data: dict[str, Any]
    created_at: datetime
    attempts: int


def alert_body(type_: str, created_at: datetime, data: dict[str, Any]) -> bytes:
    """The JSON a receiver gets: the same bytes on every attempt, so retries verify alike."""
    timestamp = created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return orjson.dumps({"type": type_, "timestamp": timestamp, "data": data})


class AlertSender:
    """Sends due alerts to one endpoint. Built only when GATEWAY_ALERT_URL is set: without it,
    alerts stay `pending` in the table (listed by `GET /admin/alerts`) and are sent once it is."""

    def __init__(
        self,
        db: Database,
        http: httpx.AsyncClient,
        endpoint: AlertEndpoint,
        allow_networks: Networks,
        retry_base_s: float,
        resolver: Resolver | None = None,
    ) -> None:
        self.db = db
        self.http = http  # the callbacks' client: no proxy settings, no redirects
        self.endpoint = endpoint
        self.allow_networks = allow_networks  # GATEWAY_CALLBACK_ALLOW_NETWORKS
        self.retry_base_s = retry_base_s  # GATEWAY_CALLBACK_RETRY_BASE_S
        self.resolver = resolver

    async def deliver_due(self, limit: int = 10) -> int:
        """Attempt every alert that is due (up to `limit`); returns how many were attempted."""
        claimed = await self._claim(limit)
        # At once, not one after another: the whole batch finishes within one attempt's deadline,
        # far inside the claim, so a slow receiver never lets another replica take a claimed row.
        await asyncio.gather(*(self._attempt(alert) for alert in claimed))
        return len(claimed)

    async def _claim(self, limit: int) -> list[_Claimed]:
        now = utcnow()
        due = (Alert.status == "pending") & (Alert.next_at <= now)
        # Most rounds find nothing: ask with a read first, so an idle loop never takes SQLite's
        # write lock.
        async with self.db.sessions() as session:
            if await session.scalar(select(Alert.id).where(due).limit(1)) is None:
                return []
        async with self.db.transaction() as session:
            rows = (
                await session.execute(
                    select(Alert.id, Alert.type, Alert.data, Alert.created_at, Alert.attempts)
                    .where(due)
                    .order_by(Alert.next_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if rows:
                await session.execute(
                    update(Alert)
                    .where(Alert.id.in_([row.id for row in rows]))
                    .values(next_at=now + timedelta(seconds=CLAIM_S))
                    .execution_options(synchronize_session=False)
                )
        return [_Claimed(row.id, row.type, row.data, row.created_at, row.attempts) for row in rows]

    async def _attempt(self, alert: _Claimed) -> None:
        try:
            outcome = await self._send(alert)
            await self._record(alert, outcome)
        except Exception:  # one broken row must not stop the others; its claim lapses and it is retried
            log.exception("alert %s could not be delivered", alert.id)

    async def _send(self, alert: _Claimed) -> DeliveryOutcome:
        body = alert_body(alert.type, alert.created_at, alert.data)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **webhook_headers(self.endpoint.secret, alert.id, body),
        }
        return await guarded_deliver(
            self.http, self.endpoint.url, self.allow_networks, body, headers, DELIVERY_TIMEOUT_S, self.resolver
        )

    async def _record(self, alert: _Claimed, outcome: DeliveryOutcome) -> None:
        attempts = alert.attempts + 1
        now = utcnow()
        delay = retry_delay_s(attempts, self.retry_base_s)
        values: dict[str, object]
        if outcome.delivered:
            values = {"status": "delivered", "delivered_at": now, "last_error": None}
        elif delay is None:
            values = {"status": "failed", "last_error": outcome.reason[:300]}
            log.warning(
                "giving up on alert %s (%s) after %d attempts: %s", alert.id, alert.type, attempts, outcome.reason
            )
        else:
            values = {"next_at": now + timedelta(seconds=delay), "last_error": outcome.reason[:300]}
            log.info("alert %s not delivered (attempt %d): %s", alert.id, attempts, outcome.reason)
        async with self.db.transaction() as session:
            await session.execute(
                update(Alert)
                .where(Alert.id == alert.id, Alert.status == "pending")
                .values(attempts=attempts, **values)
                .execution_options(synchronize_session=False)
            )
