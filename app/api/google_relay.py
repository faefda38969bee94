"""The Google-native relay: Imagen's `:predict` on the paths Google's clients call.

Same keys, billing and routing as the unified route (one pipeline); Google's request, response
and error shapes; `x-goog-api-key`, `?key=` and Bearer all authenticate.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.body import read_json_object
from app.api.disconnect import unless_disconnected
from app.api.google_wire import empty_prediction, parse_predict_request, rai_only, render_predictions
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
    raw = await read_json_object(request, gateway.settings.max_body_bytes)
    image_request, params = parse_predict_request(model, raw)
    try:
        generated = await unless_disconnected(
            request, gateway.generation.generate(caller, image_request, endpoint=request.url.path)
        )
    except AllImagesFiltered as filtered:
        body = rai_only(filtered.reasons) if params.include_rai_reason and filtered.reasons else empty_prediction()
        return Response(body, media_type="application/json", headers={"x-gateway-credits": "0"})
    billing = generated.billing
    return Response(
        render_predictions(generated, params.include_rai_reason),
        media_type="application/json",
        headers={
            "x-gateway-request-id": generated.request_id,
            "x-gateway-credits": render(billing.credits),
            "x-gateway-balance": render(billing.balance),
        },
    )


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
        openapi_extra=_OPENAPI_BODY,
    )
