"""`GET /v1/tasks/{id}` and `POST /v1/tasks/{id}/cancel` (also under `/api/v1/`)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from app.api.aliases import add_caller_route
from app.api.schemas import BillingBlock
from app.keys.auth import authenticate
from app.runtime import gateway_of
from app.tasks import service
from app.tasks.models import Task

router = APIRouter(tags=["tasks"])


class TaskImage(BaseModel):
    url: str = Field(description="Signed, expiring URL of the image (GET /v1/files/{id}).")
    mime_type: str


class TaskResult(BaseModel):
    created: int
    data: list[TaskImage]
    filtered: list[dict[str, str]] = Field(default_factory=list)


class TaskError(BaseModel):
    code: str
    message: str


class TaskCallback(BaseModel):
    url: str
    status: str = Field(description="pending | delivered | failed")
    attempts: int


class TaskObject(BaseModel):
    id: str
    object: str = "task"
    status: str = Field(description="queued | running | succeeded | failed | canceled")
    model: str
    created_at: str
    started_at: str | None
    completed_at: str | None
    result: TaskResult | None
    error: TaskError | None
    billing: BillingBlock | None
    callback: TaskCallback | None
    metadata: dict[str, str]


def task_response(request: Request, task: Task, status_code: int = 200) -> Response:
    gateway = gateway_of(request)
    body: dict[str, Any] = service.render_task(task, gateway.files.signer, gateway.settings.public_url)
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


async def get_task(request: Request, task_id: str) -> Response:
    gateway = gateway_of(request)
    caller = await authenticate(gateway.keys, request)
    async with gateway.db.sessions() as session:
        task = await service.get_task(session, caller.account_id, task_id)
    return task_response(request, task)


async def cancel_task(request: Request, task_id: str) -> Response:
    gateway = gateway_of(request)
    caller = await authenticate(gateway.keys, request)
    async with gateway.db.transaction() as session:
        task = await service.cancel(session, caller.account_id, task_id)
    return task_response(request, task)


add_caller_route(
    router,
    "/tasks/{task_id}",
    get_task,
    method="GET",
    response_model=TaskObject,
    summary="A task and, once it succeeded, its images",
)
add_caller_route(
    router,
    "/tasks/{task_id}/cancel",
    cancel_task,
    method="POST",
    response_model=TaskObject,
    summary="Cancel a queued task (released at once) or ask a running one to stop",
    description=(
        "A queued task is canceled at once and its hold released. A running task stops within a "
        "heartbeat if nothing was sent upstream yet; once its upstream call is out it finishes "
        "and is charged once, because the upstream bills for it either way."
    ),
)
