"""`GET /v1/tasks`, `GET /v1/tasks/{id}` and `POST /v1/tasks/{id}/cancel` (also under `/api/v1/`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from app.api.caller import CALLER_CHECKED, CallerDep
from app.api.replay import ReplayContext, placeholder_headers
from app.api.schemas import ERROR_RESPONSES, BillingBlock
from app.files.signing import UrlSigner
from app.http.aliases import add_caller_route
from app.http.deps import GatewayDep
from app.keys.auth import authenticate
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
    request_id: str = Field(
        description="The gateway id of the request that submitted the task (its X-Request-Id, usage record and "
        "ledger entry)."
    )
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
    placeholder: bool | None = Field(None, description="True when the built-in local placeholder generator served it.")


class TaskList(BaseModel):
    data: list[TaskObject] = Field(description="The account's tasks, newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last page.")


def task_response(task: Task, signer: UrlSigner, public_url: str | None, status_code: int = 200) -> Response:
    """The task object (see `TaskObject`): its every answer, live or replayed, is rendered here."""
    body: dict[str, Any] = service.render_task(task, signer, public_url)
    headers = placeholder_headers(bool(body.get("placeholder")))
    if status_code == 202:
        headers["location"] = f"/v1/tasks/{task.id}"  # where to poll
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json", headers=headers)


@dataclass(frozen=True)
class TaskAnswer:
    """The replay template of kind "task": a queued request replays as the task's state now."""

    kind: ClassVar[str] = "task"
    task_id: str
    account_id: str

    async def _task(self, context: ReplayContext) -> Task:
        async with context.db.sessions() as session:
            return await service.get_task(session, self.account_id, self.task_id)

    async def render(self, context: ReplayContext) -> Response:
        return task_response(await self._task(context), context.files.signer, context.public_url)

    async def served_model(self, context: ReplayContext) -> str | None:
        return (await self._task(context)).model

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "task_id": self.task_id, "account_id": self.account_id}

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> TaskAnswer:
        return cls(task_id=stored["task_id"], account_id=stored["account_id"])


async def get_task(request: Request, task_id: str, gateway: GatewayDep) -> Response:
    caller = await authenticate(gateway.keys, request)
    async with gateway.db.sessions() as session:
        task = await service.get_task(session, caller.account_id, task_id)
    return task_response(task, gateway.files.signer, gateway.settings.public_url)


async def list_tasks(
    caller: CallerDep,
    gateway: GatewayDep,
    status: Annotated[
        Literal["queued", "running", "succeeded", "failed", "canceled"] | None,
        Query(description="Only tasks in this status."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Tasks per page, 1–100.")] = 20,
    cursor: Annotated[str | None, Query(max_length=400, description="`next_cursor` of the previous page.")] = None,
) -> Response:
    after = service.TaskCursor.decode(cursor) if cursor is not None else None
    async with gateway.db.sessions() as session:
        tasks, following = await service.list_tasks(session, caller.account_id, status=status, limit=limit, after=after)
    signer, public_url = gateway.files.signer, gateway.settings.public_url
    body = {
        "data": [service.render_task(task, signer, public_url) for task in tasks],
        "next_cursor": following.encode() if following else None,
    }
    return Response(orjson.dumps(body), media_type="application/json")


async def cancel_task(request: Request, task_id: str, gateway: GatewayDep) -> Response:
    caller = await authenticate(gateway.keys, request)
    async with gateway.db.transaction() as session:
        task = await service.cancel(session, caller.account_id, task_id)
    return task_response(task, gateway.files.signer, gateway.settings.public_url)


add_caller_route(
    router,
    "/tasks",
    list_tasks,
    method="GET",
    response_model=TaskList,
    dependencies=CALLER_CHECKED,
    summary="The account's tasks, newest first, a page at a time",
    responses=ERROR_RESPONSES,
    description=(
        "Every task of the calling key's account (whichever key submitted it), newest first, each as "
        "`GET /v1/tasks/{id}` renders it. Pass `next_cursor` back as `cursor` for the next page; it is null on "
        "the last. A bad `status`, `limit` (1–100) or `cursor` is a 400 naming it, as is an unknown parameter."
    ),
)
add_caller_route(
    router,
    "/tasks/{task_id}",
    get_task,
    method="GET",
    response_model=TaskObject,
    summary="A task and, once it succeeded, its images",
    responses=ERROR_RESPONSES,
)
add_caller_route(
    router,
    "/tasks/{task_id}/cancel",
    cancel_task,
    method="POST",
    response_model=TaskObject,
    summary="Cancel a queued task (released at once) or ask a running one to stop",
    responses=ERROR_RESPONSES,
    description=(
        "A queued task is canceled at once and its hold released. A running task stops within a "
        "heartbeat if nothing was sent upstream yet; once its upstream call is out it finishes "
        "and is charged once, because the upstream bills for it either way."
    ),
)
