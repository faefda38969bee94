"""`POST /v1/images/generations` (and `/api/v1/...`): the unified, OpenAI-compatible route."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.body import read_json_object
from app.api.disconnect import unless_disconnected
from app.api.schemas import ERROR_RESPONSES, ImagesResponse
from app.api.tasks import TaskObject, task_response
from app.api.unified_wire import parse_images_request, render_images_response
from app.callbacks.ssrf import CallbackRefused, check_submission
from app.errors import InvalidValue
from app.keys.auth import authenticate
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
    raw = await read_json_object(request, gateway.settings.max_body_bytes)
    image_request, body = parse_images_request(raw)
    base_url = gateway.settings.public_url or str(request.base_url)
    if body.callback_url is not None or body.async_:
        if body.callback_url is not None:
            try:
                check_submission(body.callback_url, gateway.settings.callback_networks)
            except CallbackRefused as refused:
                raise InvalidValue(f"callback_url is refused: {refused}", param="callback_url") from None
        task = await tasks.submit(
            gateway, caller, image_request, request.url.path, callback_url=body.callback_url, public_base=base_url
        )
        return task_response(request, task, status_code=202)
    generated = await unless_disconnected(
        request, gateway.generation.generate(caller, image_request, endpoint=request.url.path)
    )
    return Response(render_images_response(generated, gateway.files.signer, base_url), media_type="application/json")


for _path in ("/v1/images/generations", "/api/v1/images/generations"):
    router.add_api_route(
        _path,
        create_images,
        methods=["POST"],
        summary="Generate images",
        description=(
            "Generate images with any catalog model. Charges credits_per_image × model multiplier × "
            "channel multiplier for each delivered image. With `callback_url` or `async: true` the "
            "request is queued: 202 with the task object (credits are held now; 402 if short)."
        ),
        response_model=ImagesResponse,
        responses={**ERROR_RESPONSES, 202: {"model": TaskObject, "description": "Queued as a task"}},
        openapi_extra=_OPENAPI_BODY,
        include_in_schema=True,
    )
