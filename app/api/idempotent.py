"""Running a POST under its `Idempotency-Key`, and replaying the first answer.

A route hands over a `produce` function that does the work and returns the response plus a
*template* of it that refers to images by file id. The template is what is kept; a replay renders
it again (base64 read back from the blob store, or freshly signed URLs).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import orjson
from fastapi.responses import Response
from starlette.requests import Request

from app.billing.models import UsageRecord
from app.errors import ModelNotAllowed
from app.files.models import StoredFile
from app.idempotency import service as idem
from app.keys.auth import Caller
from app.runtime import Gateway
from app.tasks import service as tasks

Template = dict[str, Any]
Produce = Callable[[bool], Awaitable[tuple[Response, Template | None]]]


async def with_idempotency(
    request: Request, gateway: Gateway, caller: Caller, raw_body: bytes, base_url: str, produce: Produce
) -> Response:
    key = request.headers.get("idempotency-key")
    if key is None:
        response, _ = await produce(False)
        return response
    claim = await idem.begin(
        gateway.db,
        caller.account_id,
        key,
        idem.fingerprint(request.url.path, raw_body),
        run_for=timedelta(seconds=gateway.settings.request_deadline_s + 60),
    )
    if isinstance(claim, idem.Replay):
        await _refuse_unless_key_may_use(gateway, caller, claim.response)
        replayed = await render_template(gateway, claim.response, base_url)
        replayed.status_code = claim.status_code
        replayed.headers["idempotent-replayed"] = "true"
        return replayed
    try:
        response, template = await produce(True)
    except BaseException:
        await asyncio.shield(idem.abandon(gateway.db, claim))
        raise
    if template is None:
        await idem.abandon(gateway.db, claim)
    else:
        await idem.complete(gateway.db, claim, response.status_code, template)
    return response


async def _refuse_unless_key_may_use(gateway: Gateway, caller: Caller, template: Template) -> None:
    """Idempotency keys are scoped to the account, so another key of the account can replay an
    answer; it gets it only if it may use the model that answer came from, as a fresh request."""
    if caller.models is None:
        return
    model = await _served_model(gateway, template)
    if model is None or not caller.may_use(model):
        raise ModelNotAllowed(f"This key may not use the model {model!r}.", param="model")


async def _served_model(gateway: Gateway, template: Template) -> str | None:
    if "model" in template:
        return str(template["model"])
    if template["kind"] == "images":
        return str(template["body"]["model"])
    async with gateway.db.sessions() as session:
        if template["kind"] == "task":
            task = await tasks.get_task(session, template["account_id"], template["task_id"])
            return task.model
        # A predict answer kept before templates named their model: its usage record does.
        record = await session.get(UsageRecord, template.get("headers", {}).get("x-gateway-request-id", ""))
        return record.model if record is not None else None


async def render_template(gateway: Gateway, template: Template, base_url: str) -> Response:
    kind = template["kind"]
    if kind == "task":
        async with gateway.db.sessions() as session:
            task = await tasks.get_task(session, template["account_id"], template["task_id"])
        body: Any = tasks.render_task(task, gateway.files.signer, gateway.settings.public_url)
        return Response(orjson.dumps(body), media_type="application/json")
    items = await _image_items(gateway, template["files"], template["response_format"], base_url)
    if kind == "images":
        body = {**template["body"], "data": items}
    else:  # predict
        predictions: list[dict[str, str]] = [
            {"bytesBase64Encoded": item["b64_json"], "mimeType": item["mime_type"]} for item in items
        ]
        predictions.extend({"raiFilteredReason": reason} for reason in template.get("rai_reasons", []))
        body = {"predictions": predictions}
    return Response(orjson.dumps(body), media_type="application/json", headers=template.get("headers", {}))


def file_refs(files: list[StoredFile]) -> list[dict[str, str]]:
    return [{"file_id": f.id, "mime_type": f.content_type} for f in files]


async def _image_items(
    gateway: Gateway, refs: list[dict[str, str]], response_format: str, base_url: str
) -> list[dict[str, str]]:
    if response_format == "url":
        return [
            {"url": gateway.files.signer.url(base_url, ref["file_id"]), "mime_type": ref["mime_type"]} for ref in refs
        ]
    items = []
    for ref in refs:
        data = await gateway.files.blobs.get(ref["file_id"])
        items.append({"b64_json": base64.b64encode(data).decode("ascii"), "mime_type": ref["mime_type"]})
    return items
