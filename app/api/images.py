"""`POST /v1/images/generations` (and `/api/v1/...`): the unified, OpenAI-compatible route."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.body import read_json_object
from app.api.disconnect import unless_disconnected
from app.api.schemas import ERROR_RESPONSES, ImagesResponse
from app.api.unified_wire import parse_images_request, render_images_response
from app.keys.auth import authenticate
from app.runtime import gateway_of

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
    image_request, _ = parse_images_request(raw)
    generated = await unless_disconnected(
        request, gateway.generation.generate(caller, image_request, endpoint=request.url.path)
    )
    return Response(render_images_response(generated), media_type="application/json")


for _path in ("/v1/images/generations", "/api/v1/images/generations"):
    router.add_api_route(
        _path,
        create_images,
        methods=["POST"],
        summary="Generate images",
        description=(
            "Generate images with any catalog model. Charges credits_per_image × model multiplier × "
            "channel multiplier for each delivered image."
        ),
        response_model=ImagesResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=_OPENAPI_BODY,
        include_in_schema=True,
    )
