"""Task workers: claim queued tasks under a lease, run them through the one pipeline, renew the
lease while working, and hand tasks back to the queue on shutdown.

Claiming is one short transaction: PostgreSQL skips rows other workers hold (`FOR UPDATE SKIP
LOCKED`); SQLite serialises writers (BEGIN IMMEDIATE), which makes the same query atomic. A task
whose lease lapsed (its worker crashed) is claimed again: the upstream call may be repeated, but
the hold is captured at most once, so the caller is charged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.holds import HoldTerms
from app.billing.models import UsageRecord
from app.db import utcnow
from app.errors import GatewayError
from app.generation.results import Generated
from app.generation.service import Finish
from app.observability.logs import request_id_var
from app.tasks import service
from app.tasks.deps import TaskDeps
from app.tasks.models import Task

log = logging.getLogger("app.tasks.worker")


class TaskWorker:
    def __init__(self, deps: TaskDeps) -> None:
        self.deps = deps
        self.owner = f"{socket.gethostname()}:{secrets.token_hex(4)}"
        self.concurrency = deps.worker_concurrency
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.deps.task_lease_s)

    async def run(self) -> None:
        """Claim and run tasks until `stop()`."""
        poll = self.deps.worker_poll_s
        while not self._stopping.is_set():
            claimed = None
            if len(self._running) < self.concurrency:
                try:
                    claimed = await self.claim()
                except Exception:  # a database blip must not end the worker
                    log.exception("claiming a task failed")
            if claimed is not None:
                self._running[claimed.id] = asyncio.create_task(self._process(claimed), name=f"task:{claimed.id}")
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=poll)

    async def stop(self, grace_s: float) -> None:
        """Stop claiming, give running tasks `grace_s` to finish, then put the rest back on the
        queue with their holds (another worker, or this one after a restart, runs them)."""
        self._stopping.set()
        running = list(self._running.values())
        if running:
            await asyncio.wait(running, timeout=grace_s)
        for task_id, job in list(self._running.items()):
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
            await self._requeue(task_id)

    async def claim(self) -> Task | None:
        now = utcnow()
        async with self.deps.db.transaction() as session:
            candidate = await session.scalar(
                select(Task.id)
                .where(
                    or_(
                        Task.status == "queued",
                        and_(Task.status == "running", Task.lease_expires_at < now),
                    )
                )
                .order_by(Task.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if candidate is None:
                return None
            await session.execute(
                update(Task)
                .where(Task.id == candidate)
                .values(
                    status="running",
                    lease_owner=self.owner,
                    lease_expires_at=now + self.lease,
                    started_at=now,
                    runs=Task.runs + 1,
                )
                .execution_options(synchronize_session=False)
            )
            return await session.get(Task, candidate)

    async def _process(self, task: Task) -> None:
        request_id_var.set(task.request_id)  # this task's own context: its log lines carry the request's id
        heartbeat = asyncio.create_task(self._heartbeat(task.id, asyncio.current_task()))
        try:
            await self._execute(task)
        except GatewayError:
            pass  # the task row already says why (written with the release)
        except asyncio.CancelledError:
            if not self._stopping.is_set():
                log.info("task %s canceled", task.id)
            else:
                raise
        except Exception:
            log.exception("task %s failed unexpectedly", task.id)
        finally:
            heartbeat.cancel()
            self._running.pop(task.id, None)

    async def _execute(self, task: Task) -> None:
        async with self.deps.db.sessions() as session:
            record = await session.get(UsageRecord, task.request_id)
        if record is None or record.status != "pending":
            # The hold ended already (a previous run settled it, or it expired): nothing to redo.
            await self._finish_without_hold(task, record)
            return
        request = service.request_from_json(task.request)
        admitted = await self.deps.generation.readmit(_terms(record), request)

        async def settled(session: AsyncSession, generated: Generated) -> None:
            await service.mark_succeeded(session, task.id, generated)

        async def failed(session: AsyncSession, status: str, error: GatewayError) -> None:
            await service.mark_ended(session, task.id, status, error.code, error.message)

        finish = Finish(on_settled=settled, on_failed=failed, requeue_on_cancel=self._stopping.is_set)
        await self.deps.generation.execute(admitted, finish)

    async def _finish_without_hold(self, task: Task, record: UsageRecord | None) -> None:
        async with self.deps.db.transaction() as session:
            if record is not None and record.status == "succeeded":
                # Settled by an earlier run whose task update is in the same transaction: only
                # a row changed underneath us gets here. Leave it as the settlement wrote it.
                return
            await service.mark_ended(
                session, task.id, "failed", "hold_expired", "The task's credit hold ended before it could run."
            )

    async def _heartbeat(self, task_id: str, job: asyncio.Task[object] | None) -> None:
        """Renew the lease while the job runs, and ask it to stop when its task was canceled."""
        interval = max(self.deps.task_lease_s / 3, 0.05)
        asked_to_stop = False
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.deps.db.transaction() as session:
                    await session.execute(
                        update(Task)
                        .where(Task.id == task_id, Task.lease_owner == self.owner, Task.status == "running")
                        .values(lease_expires_at=utcnow() + self.lease)
                        .execution_options(synchronize_session=False)
                    )
                    cancel = await session.scalar(select(Task.cancel_requested).where(Task.id == task_id))
            except Exception:
                log.exception("renewing the lease of %s failed", task_id)
                continue
            if cancel and job is not None and not asked_to_stop:
                # Keep renewing afterwards: a job whose upstream call is already out finishes
                # (app.generation.service.execute), and must not be claimed twice meanwhile.
                job.cancel()
                asked_to_stop = True

    async def _requeue(self, task_id: str) -> None:
        async with self.deps.db.transaction() as session:
            await session.execute(
                update(Task)
                .where(Task.id == task_id, Task.lease_owner == self.owner, Task.status == "running")
                .values(status="queued", lease_owner=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )


def _terms(record: UsageRecord) -> HoldTerms:
    return HoldTerms(
        request_id=record.id,
        account_id=record.account_id,
        key_id=record.key_id,
        endpoint=record.endpoint,
        model=record.model,
        unit_credits=record.unit_credits,
        model_multiplier=record.model_multiplier,
        images_requested=record.images_requested,
        hold_credits=record.hold_credits,
        hold_until=record.hold_until or utcnow(),
        user=record.user,
        metadata=dict(record.request_metadata or {}),
        client_request_id=record.client_request_id,
    )
