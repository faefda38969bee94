"""The Google-native relay: Imagen's `:predict` on the paths Google's clients call.

Same keys, billing and routing as the unified route (one pipeline); Google's request, response
and error shapes; `x-goog-api-key`, `?key=` and Bearer all authenticate.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.body import endpoint_of, read_json
from app.api.disconnect import unless_disconnected
from app.api.google_wire import empty_prediction, parse_predict_request, rai_only, render_predictions
from app.api.idempotent import Template, file_refs, with_idempotency
from app.billing.amounts import render
from app.errors import NotFound
from app.generation.service import AllImagesFiltered
from app.keys.auth import authenticate
from app.runtime import gateway_of

router = APIRouter(tags=["google-native"])

PREDICT_PATHS = (
    "/v1beta/models/{model}:predict",
    "/v1/models/{model}:predict",
    "/{version}/publishers/google/models/{model}:predict",
    "/{version}/projects/{project}/locations/{location}/publishers/google/models/{model}:predict",
)
_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictBody"}}},
    }
}


async def predict(request: Request, model: str) -> Response:
    # Set before anything can fail, so every error (auth included) comes back in Google's shape.
    request.state.google_errors = True
    version = request.path_params.get("version")
    if version is not None and version not in ("v1", "v1beta1"):
        raise NotFound(f"No route {request.url.path}: the version must be v1 or v1beta1.")
    gateway = gateway_of(request)
    caller = await authenticate(gateway.keys, request, google=True)
    raw, body = await read_json(request, gateway.settings.max_body_bytes)
    image_request, params = parse_predict_request(model, body)
    base_url = gateway.settings.public_url or str(request.base_url)

    async def produce(keep_files: bool) -> tuple[Response, Template | None]:
        try:
            generated = await unless_disconnected(
                request,
                gateway.generation.generate(
                    caller, replace(image_request, keep_files=keep_files), endpoint=endpoint_of(request)
                ),
            )
        except AllImagesFiltered as filtered:
            # Google answers 200 with {} when every image was filtered. Nothing was charged, so
            # nothing is kept for replay: a retry with the same key runs again.
            answer = (
                rai_only(filtered.reasons) if params.include_rai_reason and filtered.reasons else empty_prediction()
            )
            return Response(answer, media_type="application/json", headers={"x-gateway-credits": "0"}), None
        headers = {
            "x-gateway-request-id": generated.request_id,
            "x-gateway-credits": render(generated.billing.credits),
            "x-gateway-balance": render(generated.billing.balance),
        }
        response = Response(
            render_predictions(generated, params.include_rai_reason), media_type="application/json", headers=headers
        )
        rai = generated.filtered_reasons if params.include_rai_reason else []
        template = {
            "kind": "predict",
            "model": generated.model.id,  # a replay by another key of the account checks it
            "response_format": "b64_json",
            "files": file_refs(generated.files),
            "rai_reasons": rai,
            "headers": headers,
        }
        return response, template

    return await with_idempotency(request, gateway, caller, raw, base_url, produce)


# `predict` reads these from request.path_params (one handler serves every path), so FastAPI cannot
# see them: each path declares its own, or clients generated from /openapi.json cannot call it.
_PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "version": {"type": "string", "enum": ["v1", "v1beta1"]},
    "project": {"type": "string"},
    "location": {"type": "string"},
}


def _openapi_extra(path: str) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in _PATH_PARAMETERS.items()
        if f"{{{name}}}" in path
    ]
    return {**_OPENAPI_BODY, "parameters": parameters} if parameters else _OPENAPI_BODY


for _path in PREDICT_PATHS:
    router.add_api_route(
        _path,
        predict,
        methods=["POST"],
        summary="Imagen :predict (Google-native relay)",
        description=(
            "Imagen's request and response format. Auth: Bearer, x-goog-api-key or ?key=. "
            "All images filtered: 200 with {}. Credits charged are in the x-gateway-credits header."
        ),
        openapi_extra=_openapi_extra(_path),
    )
