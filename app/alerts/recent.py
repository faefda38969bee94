"""Reading the alerts back: newest first, for `GET /admin/alerts` and `image-gateway alerts list`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.models import Alert

ALERT_STATUSES = ("pending", "delivered", "failed")


async def recent_alerts(session: AsyncSession, status: str | None, limit: int) -> Sequence[Alert]:
    """The `limit` newest alerts, of one status when `status` is given."""
    query = select(Alert).order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Alert.status == status)
    return (await session.scalars(query)).all()
