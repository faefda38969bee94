"""`POST /v1/images/generations` (and `/api/v1/...`): the unified, OpenAI-compatible route."""

from __future__ import annotations

from dataclasses import replace

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.aliases import add_caller_route
from app.api.body import endpoint_of, read_json
from app.api.disconnect import unless_disconnected
from app.api.idempotent import Template, file_refs, with_idempotency
from app.api.schemas import ERROR_RESPONSES, ImagesResponse
from app.api.tasks import TaskObject, task_response
from app.api.unified_wire import image_items, images_body, parse_images_request
from app.errors import InvalidValue
from app.keys.auth import authenticate
from app.net.ssrf import URLRefused, check_without_dns
from app.runtime import gateway_of
from app.tasks import service as tasks

router = APIRouter(tags=["images"])

_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ImagesGenerationBody"}}},
    }
}


async def create_images(request: Request) -> Response:
    gateway = gateway_of(request)
    caller = await authenticate(gateway.keys, request)
    raw, body_json = await read_json(request, gateway.settings.max_body_bytes)
    image_request, body = parse_images_request(body_json)
    base_url = gateway.settings.public_url or str(request.base_url)
    queued = body.callback_url is not None or body.async_
    if body.callback_url is not None:
        try:
            check_without_dns(body.callback_url, gateway.settings.callback_networks)
        except URLRefused as refused:
            raise InvalidValue(f"callback_url is refused: {refused}", param="callback_url") from None

    async def produce(keep_files: bool) -> tuple[Response, Template | None]:
        if queued:
            task = await tasks.submit(
                gateway.generation,
                caller,
                image_request,
                endpoint_of(request),
                retention_days=gateway.settings.retention_days,
                callback_url=body.callback_url,
                public_base=base_url,
            )
            return task_response(request, task, 202), {
                "kind": "task",
                "task_id": task.id,
                "account_id": caller.account_id,
            }
        wanted = replace(image_request, keep_files=keep_files)
        generated = await unless_disconnected(
            request, gateway.generation.generate(caller, wanted, endpoint=endpoint_of(request))
        )
        items = image_items(generated, wanted.response_format, gateway.files.signer, base_url)
        response = Response(orjson.dumps(images_body(generated, items)), media_type="application/json")
        template = {
            "kind": "images",
            "response_format": wanted.response_format,
            "files": file_refs(generated.files),
            "body": images_body(generated, []),
        }
        return response, template

    return await with_idempotency(request, gateway, caller, raw, base_url, produce)


add_caller_route(
    router,
    "/images/generations",
    create_images,
    method="POST",
    response_model=ImagesResponse,
    summary="Generate images",
    description=(
        "Generate images with any catalog model. Charges credits_per_image × model multiplier × "
        "channel multiplier for each delivered image. With `callback_url` or `async: true` the "
        "request is queued: 202 with the task object (credits are held now; 402 if short)."
    ),
    responses={**ERROR_RESPONSES, 202: {"model": TaskObject, "description": "Queued as a task"}},
    openapi_extra=_OPENAPI_BODY,
)
