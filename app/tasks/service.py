"""Submitting, reading and canceling tasks, and rendering the task object of the contract."""

from __future__ import annotations

import base64
import binascii
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import holds
from app.db import new_id, utcnow
from app.errors import InvalidValue, NotFound
from app.files.models import StoredFile
from app.files.signing import UrlSigner
from app.generation.results import Generated
from app.generation.service import GenerationService
from app.images import ImageRequest
from app.keys.auth import Caller
from app.tasks.models import Task


def request_to_json(request: ImageRequest) -> dict[str, Any]:
    return dataclasses.asdict(request)


def request_from_json(data: dict[str, Any]) -> ImageRequest:
    return ImageRequest(**data)


async def submit(
    generation: GenerationService,
    caller: Caller,
    request: ImageRequest,
    endpoint: str,
    *,
    retention_days: float,
    callback_url: str | None,
    public_base: str,
    request_id: str | None = None,
    client_request_id: str | None = None,
) -> Task:
    """Hold the credits and queue the task in one transaction: a 402 comes now, not later, and
    no task can exist without its hold (or a hold without its task). The hold's usage record takes
    the submitting request's id (`request_id`), which the task object shows."""
    request = dataclasses.replace(request, response_format="url")  # task results are always files
    retention = timedelta(days=retention_days)
    task_id = new_id("task")
    created: list[Task] = []

    async def queue(session: AsyncSession, terms: holds.HoldTerms) -> None:
        now = utcnow()
        task = Task(
            id=task_id,
            account_id=caller.account_id,
            key_id=caller.key_id,
            request_id=terms.request_id,
            model=terms.model,
            request=request_to_json(request),
            status="queued",
            cancel_requested=False,
            runs=0,
            task_metadata=dict(request.metadata),
            public_base=public_base,
            callback_url=callback_url,
            webhook_id=f"msg_{task_id.removeprefix('task_')}" if callback_url else None,
            callback_attempts=0,
            created_at=now,
            expires_at=now + retention,
        )
        session.add(task)
        await session.flush()
        created.append(task)

    # A queued task keeps its hold until it runs or its retention ends.
    async with generation.limited(caller):  # rate limits count submissions
        await generation.admit(
            caller,
            request,
            endpoint,
            hold_for=retention,
            on_hold=queue,
            request_id=request_id,
            client_request_id=client_request_id,
        )
    return created[0]


async def get_task(session: AsyncSession, account_id: str, task_id: str) -> Task:
    task = await session.get(Task, task_id)
    if task is None or task.account_id != account_id:
        raise NotFound(f"No task with id {task_id!r}.", param="id")  # another account's task: same answer
    return task


@dataclass(frozen=True)
class TaskCursor:
    """Where a page of `list_tasks` ended: the last task's (created_at, id), base64. The query is
    scoped to the caller's account, so an edited cursor can only move within its own tasks."""

    created_at: datetime
    task_id: str

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.task_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> TaskCursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            instant, task_id = raw.split("|", 1)
            created_at = datetime.fromisoformat(instant)
            if created_at.tzinfo is None or not task_id.startswith("task_"):
                raise ValueError(text)
            # (An offset at the ends of the calendar overflows on the way to UTC.)
            return cls(created_at.astimezone(UTC), task_id)
        except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
            raise InvalidValue("cursor is not one this API handed out.", param="cursor") from None


async def list_tasks(
    session: AsyncSession, account_id: str, *, status: str | None, limit: int, after: TaskCursor | None
) -> tuple[list[Task], TaskCursor | None]:
    """The account's tasks newest first, one page, and the cursor of the next (None on the last).
    Keyset on (created_at, id) over ix_tasks_account_created: a deep page costs what the first does."""
    query = (
        select(Task)
        .where(Task.account_id == account_id)
        .order_by(Task.created_at.desc(), Task.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        query = query.where(Task.status == status)
    if after is not None:
        # The plain `<=` lets the database walk the index; the OR breaks ties by id.
        query = query.where(
            Task.created_at <= after.created_at,
            or_(Task.created_at < after.created_at, and_(Task.created_at == after.created_at, Task.id < after.task_id)),
        )
    tasks = list((await session.scalars(query)).all())
    if len(tasks) <= limit:
        return tasks, None
    tasks = tasks[:limit]
    return tasks, TaskCursor(tasks[-1].created_at, tasks[-1].id)


async def cancel(session: AsyncSession, account_id: str, task_id: str) -> Task:
    """A queued task is canceled at once and its hold released; a running one is asked to stop
    (its worker notices within a heartbeat). A finished task is returned as it is."""
    task = await get_task(session, account_id, task_id)
    if task.status == "queued":
        changed = await session.execute(
            update(Task)
            .where(Task.id == task_id, Task.status == "queued")
            .values(status="canceled", completed_at=utcnow(), error=_error("canceled", "Canceled before it ran."))
            .execution_options(synchronize_session=False)
        )
        if changed.rowcount == 1:  # type: ignore[attr-defined]
            outcome = holds.Outcome(attempts=0, channels_tried=[], latency_ms=0, error_code="canceled")
            await holds.release(session, task.request_id, "canceled", outcome)
            await _schedule_callback(session, task_id)
    elif task.status == "running":
        await session.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(cancel_requested=True)
            .execution_options(synchronize_session=False)
        )
    await session.refresh(task)
    return task


async def mark_succeeded(session: AsyncSession, task_id: str, generated: Generated) -> None:
    await session.execute(
        update(Task)
        .where(Task.id == task_id)
        .values(
            status="succeeded",
            completed_at=utcnow(),
            lease_owner=None,
            lease_expires_at=None,
            result={
                "created": generated.created,
                "data": [{"file_id": f.id, "mime_type": f.content_type} for f in generated.files],
                "filtered": [{"reason": reason} for reason in generated.filtered_reasons],
                # Kept with the result so every later read of the task (and its callback) says so.
                **({"placeholder": True} if generated.placeholder else {}),
            },
            billing=generated.billing.to_json(),
        )
        .execution_options(synchronize_session=False)
    )
    await _schedule_callback(session, task_id)


async def mark_ended(session: AsyncSession, task_id: str, status: str, code: str, message: str) -> None:
    """Failed or canceled: the hold was released in this same transaction."""
    await session.execute(
        update(Task)
        .where(Task.id == task_id)
        .values(
            status="canceled" if status == "canceled" else "failed",
            completed_at=utcnow(),
            lease_owner=None,
            lease_expires_at=None,
            error=_error(code, message),
        )
        .execution_options(synchronize_session=False)
    )
    await _schedule_callback(session, task_id)


async def _schedule_callback(session: AsyncSession, task_id: str) -> None:
    await session.execute(
        update(Task)
        .where(Task.id == task_id, Task.callback_url.is_not(None), Task.callback_status.is_(None))
        .values(callback_status="pending", callback_next_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def render_task(task: Task, signer: UrlSigner, public_url: str | None) -> dict[str, Any]:
    base = public_url or task.public_base
    result = None
    if task.result is not None:
        result = {
            "created": task.result["created"],
            "data": [
                {"url": signer.url(base, item["file_id"]), "mime_type": item["mime_type"]}
                for item in task.result["data"]
            ],
            "filtered": task.result.get("filtered", []),
        }
    callback = None
    if task.callback_url:
        callback = {
            "url": task.callback_url,
            "status": task.callback_status or "pending",
            "attempts": task.callback_attempts,
        }
    body: dict[str, Any] = {
        "id": task.id,
        "object": "task",
        "request_id": task.request_id,
        "status": task.status,
        "model": task.model,
        "created_at": _iso(task.created_at),
        "started_at": _iso(task.started_at),
        "completed_at": _iso(task.completed_at),
        "result": result,
        "error": task.error,
        "billing": task.billing,
        "callback": callback,
        "metadata": task.task_metadata or {},
    }
    if task.result is not None and task.result.get("placeholder"):
        body["placeholder"] = True
    return body


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


async def files_of(session: AsyncSession, request_id: str) -> list[StoredFile]:
    return list((await session.scalars(select(StoredFile).where(StoredFile.request_id == request_id))).all())
