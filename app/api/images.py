"""`POST /v1/images/generations` (and `/api/v1/...`): the unified, OpenAI-compatible route."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.idempotent import with_idempotency
from app.api.replay import ReplayTemplate
from app.api.schemas import ERROR_RESPONSES, ImagesResponse
from app.api.tasks import TaskAnswer, TaskObject, task_response
from app.api.unified_wire import ImagesAnswer, parse_images_request
from app.errors import InvalidValue
from app.http.aliases import add_caller_route
from app.http.caller_post import CallerPostDep
from app.http.disconnect import unless_disconnected
from app.net.ssrf import URLRefused, check_without_dns
from app.tasks import service as tasks

router = APIRouter(tags=["images"])

_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ImagesGenerationBody"}}},
    }
}


async def create_images(request: Request, post: CallerPostDep) -> Response:
    gateway, caller, base_url = post.gateway, post.caller, post.base_url
    image_request, body = parse_images_request(post.body)
    queued = body.callback_url is not None or body.async_
    if body.callback_url is not None:
        try:
            check_without_dns(body.callback_url, gateway.settings.callback_networks)
        except URLRefused as refused:
            raise InvalidValue(f"callback_url is refused: {refused}", param="callback_url") from None

    async def produce(keep_files: bool) -> tuple[Response, ReplayTemplate | None]:
        if queued:
            task = await tasks.submit(
                gateway.generation,
                caller,
                image_request,
                post.endpoint,
                retention_days=gateway.settings.retention_days,
                callback_url=body.callback_url,
                public_base=base_url,
                request_id=post.request_id,
                client_request_id=post.client_request_id,
            )
            response = task_response(task, gateway.files.signer, gateway.settings.public_url, 202)
            return response, TaskAnswer(task_id=task.id, account_id=caller.account_id)
        wanted = replace(image_request, keep_files=keep_files)
        generated = await unless_disconnected(
            request,
            gateway.generation.generate(
                caller,
                wanted,
                endpoint=post.endpoint,
                request_id=post.request_id,
                client_request_id=post.client_request_id,
            ),
        )
        answer = ImagesAnswer.of(generated, wanted.response_format)
        return answer.live_response(generated, gateway.files.signer, base_url), answer

    return await with_idempotency(request, post, produce)


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
