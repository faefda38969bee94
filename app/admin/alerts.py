"""Admin route for alerts: what the gateway announced (or still has to) at GATEWAY_ALERT_URL, so an
operator can see a failed delivery and why, or alerts kept while no URL is configured."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from app.alerts.models import Alert
from app.alerts.recent import recent_alerts
from app.http.deps import AdminGateway

router = APIRouter(prefix="/admin", tags=["admin: alerts"])

AlertStatus = Literal["pending", "delivered", "failed"]
AlertType = Literal["account.low_balance", "budget.threshold", "channel.disabled"]


class AlertSearch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: AlertStatus | None = Field(
        None, description="pending (not yet delivered, or GATEWAY_ALERT_URL unset), delivered, or failed."
    )
    limit: int = Field(50, ge=1, le=500)


class AlertOut(BaseModel):
    id: str = Field(description="Also the `webhook-id` header of every delivery attempt.")
    type: AlertType
    data: dict[str, Any]
    status: AlertStatus
    attempts: int = Field(description="Delivery attempts so far.")
    last_error: str | None = Field(description="Why the last attempt failed.")
    next_attempt_at: datetime | None = Field(description="When a pending alert is tried next.")
    created_at: datetime = Field(description="When the event happened; the `timestamp` of the body.")
    delivered_at: datetime | None

    @classmethod
    def of(cls, alert: Alert) -> AlertOut:
        return cls.model_validate(
            {
                "id": alert.id,
                "type": alert.type,
                "data": alert.data,
                "status": alert.status,
                "attempts": alert.attempts,
                "last_error": alert.last_error,
                "next_attempt_at": alert.next_at if alert.status == "pending" else None,
                "created_at": alert.created_at,
                "delivered_at": alert.delivered_at,
            }
        )


class AlertPage(BaseModel):
    data: list[AlertOut]


@router.get("/alerts", response_model=AlertPage)
async def list_alerts(gateway: AdminGateway, search: Annotated[AlertSearch, Query()]) -> AlertPage:
    """Recent alerts, newest first, with their delivery state."""
    async with gateway.db.sessions() as session:
        alerts = await recent_alerts(session, search.status, search.limit)
    return AlertPage(data=[AlertOut.of(alert) for alert in alerts])
