"""A channel's credential refusals in a row, and disabling it when there are too many. Never commits.

The count lives in the channel's row (`credential_failures`), so every replica adds to the same
one, in short transactions of their own: a refusal is the rare path, and the hot path writes
nothing unless the count is nonzero (the catalog snapshot carries it). Disabling is a
compare-and-set on `enabled` in the transaction that counted the last refusal, and the
`channel.disabled` alert is queued in it too: however many replicas see the refusals at once,
one disables the channel and one alert goes out.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.events import queue_channel_disabled
from app.catalog.models import Channel
from app.db import utcnow

REASON_CHARS = 300  # the length of Channel.disabled_reason


@dataclass(frozen=True)
class Counted:
    failures: int  # refusals in a row, this one included
    disabled: bool  # this call disabled the channel (and queued the alert)


async def count_refusal(
    session: AsyncSession, channel_id: str, channel_name: str, status: int, message: str, disable_after: int
) -> Counted:
    """One more refusal in a row; at `disable_after` of them, disable the channel if it still is
    enabled, with the reason, and queue the alert."""
    counted = (
        await session.execute(
            update(Channel)
            .where(Channel.id == channel_id)
            # updated_at stays: it says when an operator (or the gateway) last changed the channel.
            .values(credential_failures=Channel.credential_failures + 1, updated_at=Channel.updated_at)
            .returning(Channel.credential_failures, Channel.enabled)
        )
    ).one_or_none()
    if counted is None:  # deleted meanwhile
        return Counted(0, False)
    failures, enabled = counted
    if failures < disable_after or not enabled:
        return Counted(failures, False)
    reason = f"upstream answered {status} on {failures} calls in a row: {message}"[:REASON_CHARS]
    now = utcnow()
    disabled = await session.execute(
        update(Channel)
        .where(Channel.id == channel_id, Channel.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason, updated_at=now)
    )
    if disabled.rowcount != 1:  # type: ignore[attr-defined]
        return Counted(failures, False)
    await queue_channel_disabled(
        session, {"channel_id": channel_id, "channel_name": channel_name, "reason": reason}, now
    )
    return Counted(failures, True)


async def reset_refusals(session: AsyncSession, channel_id: str) -> None:
    """A call that worked ends the run of refusals."""
    await session.execute(
        update(Channel)
        .where(Channel.id == channel_id, Channel.credential_failures != 0)
        .values(credential_failures=0, updated_at=Channel.updated_at)
    )


def clear_on_enable(row: Channel, fields: dict[str, object]) -> None:
    """An operator enabling a disabled channel starts it afresh: no reason shown, no refusals
    counted. (Called before the fields are applied; `enabled: true` sent to a channel that is
    enabled already, as a body copied from GET does, changes nothing.)"""
    if fields.get("enabled") is True and not row.enabled:
        row.disabled_reason = None
        row.credential_failures = 0
