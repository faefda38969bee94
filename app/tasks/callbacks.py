"""Announcing finished tasks: a signed POST of the final task object to the task's callback URL,
retried on the webhooks' schedule (app/callbacks/schedule.py) until the receiver answers 2xx.

Every attempt goes through the SSRF guard again (DNS may have changed since submission) and to
the address that was checked. `webhook-id` stays the same on every retry so receivers can
de-duplicate; each attempt is recorded on the task.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import orjson
from sqlalchemy import select, update

from app.billing.accounts import signing_secrets
from app.billing.models import Account
from app.callbacks.delivery import guarded_deliver
from app.callbacks.schedule import CLAIM_S, DELIVERY_TIMEOUT_S, retry_delay_s
from app.callbacks.signing import webhook_headers_signed_by
from app.db import utcnow
from app.tasks.deps import TaskDeps
from app.tasks.models import Task
from app.tasks.service import render_task

log = logging.getLogger("app.tasks.callbacks")


async def deliver_due_callbacks(deps: TaskDeps, limit: int = 10) -> int:
    """Attempt every callback that is due (up to `limit`); returns how many were attempted."""
    claimed = await _claim(deps, limit)
    # All at once: one after another, ten slow receivers (15 s each) would outlast the claim, and
    # another replica could then send the same callbacks again.
    await asyncio.gather(*(_attempt_logged(deps, task_id) for task_id in claimed))
    return len(claimed)


async def _attempt_logged(deps: TaskDeps, task_id: str) -> None:
    try:
        await _attempt(deps, task_id)
    except Exception:  # one broken row must not stop the others
        log.exception("callback for %s failed unexpectedly", task_id)


async def _claim(deps: TaskDeps, limit: int) -> list[str]:
    now = utcnow()
    async with deps.db.transaction() as session:
        due = list(
            (
                await session.scalars(
                    select(Task.id)
                    .where(Task.callback_status == "pending", Task.callback_next_at <= now)
                    .order_by(Task.callback_next_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
        )
        if due:
            await session.execute(
                update(Task)
                .where(Task.id.in_(due))
                .values(callback_next_at=now + timedelta(seconds=CLAIM_S))
                .execution_options(synchronize_session=False)
            )
    return due


async def _attempt(deps: TaskDeps, task_id: str) -> None:
    async with deps.db.sessions() as session:
        task = await session.get(Task, task_id)
        account = await session.get(Account, task.account_id) if task is not None else None
    if task is None or account is None or task.callback_url is None or task.webhook_id is None:
        return
    body = orjson.dumps(render_task(task, deps.files.signer, deps.public_url))
    # For a day after a rotation, signed by the new secret and the one it replaced.
    signed = webhook_headers_signed_by(signing_secrets(account, utcnow()), task.webhook_id, body)
    headers = {"content-type": "application/json", **signed}
    outcome = await guarded_deliver(
        deps.callback_http, task.callback_url, deps.callback_networks, body, headers, DELIVERY_TIMEOUT_S
    )
    attempts = task.callback_attempts + 1
    delay = retry_delay_s(attempts, deps.callback_retry_base_s)
    if outcome.delivered:
        values: dict[str, object] = {"callback_status": "delivered", "callback_next_at": None}
    elif delay is None:
        values = {"callback_status": "failed", "callback_next_at": None}
        log.warning("giving up on the callback of %s after %d attempts: %s", task_id, attempts, outcome.reason)
    else:
        values = {"callback_next_at": utcnow() + timedelta(seconds=delay)}
    async with deps.db.transaction() as session:
        await session.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(
                callback_attempts=attempts,
                callback_last_error=None if outcome.delivered else outcome.reason[:300],
                **values,
            )
            .execution_options(synchronize_session=False)
        )
