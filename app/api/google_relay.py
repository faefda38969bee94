"""The Google-native relay: Imagen's `:predict` and, for image models, Gemini's `:generateContent`
on the paths Google's clients call.

Same keys, billing and routing as the unified route (one pipeline); Google's request, response
and error shapes; `x-goog-api-key`, `?key=` and Bearer all authenticate.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from app.api.gemini_wire import GenerateContentAnswer, parse_generate_content_request, withheld_only
from app.api.google_wire import PredictAnswer, empty_prediction, google_error_body, parse_predict_request, rai_only
from app.api.idempotent import with_idempotency
from app.api.replay import ReplayTemplate
from app.api.schemas import GOOGLE_ERROR_RESPONSES, GenerateContentResponse, PredictResponse
from app.errors import GatewayError, NotFound
from app.generation.results import AllImagesFiltered, Generated
from app.http.caller_post import CallerPost, GooglePostDep
from app.http.disconnect import unless_disconnected
from app.http.errors import WireRoute
from app.images import ImageRequest


class GoogleRoute(WireRoute):
    """Every error on the relay, from a missing key to a 500, in Google's shape."""

    def error_body(self, error: GatewayError, request_id: str | None) -> dict[str, object]:
        return google_error_body(error)


router = APIRouter(tags=["google-native"], route_class=GoogleRoute)

PREDICT_PATHS = (
    "/v1beta/models/{model}:predict",
    "/v1/models/{model}:predict",
    "/{version}/publishers/google/models/{model}:predict",
    "/{version}/projects/{project}/locations/{location}/publishers/google/models/{model}:predict",
)
# The same path shapes with Gemini's method: what google-genai's `generate_content` calls (Gemini
# API and Vertex modes alike) when pointed at the gateway.
GENERATE_CONTENT_PATHS = tuple(path.replace(":predict", ":generateContent") for path in PREDICT_PATHS)


def _openapi_body(schema: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
    }


async def known_version(request: Request) -> None:
    """Vertex paths carry an API version; another one is no route (before the key is looked at)."""
    version = request.path_params.get("version")
    if version is not None and version not in ("v1", "v1beta1"):
        raise NotFound(f"No route {request.url.path}: the version must be v1 or v1beta1.")


async def _generate(request: Request, post: CallerPost, image_request: ImageRequest, keep_files: bool) -> Generated:
    """The canonical pipeline for one relayed request, abandoned if the client goes away."""
    return await unless_disconnected(
        request,
        post.gateway.generation.generate(
            post.caller,
            replace(image_request, keep_files=keep_files),
            endpoint=post.endpoint,
            request_id=post.request_id,
            client_request_id=post.client_request_id,
        ),
    )


async def predict(request: Request, model: str, post: GooglePostDep) -> Response:
    image_request, params = parse_predict_request(model, post.body)

    async def produce(keep_files: bool) -> tuple[Response, ReplayTemplate | None]:
        try:
            generated = await _generate(request, post, image_request, keep_files)
        except AllImagesFiltered as filtered:
            # Google answers 200 with {} when every image was filtered. Nothing was charged, so
            # nothing is kept for replay: a retry with the same key runs again.
            answer = (
                rai_only(filtered.reasons) if params.include_rai_reason and filtered.reasons else empty_prediction()
            )
            return Response(answer, media_type="application/json", headers={"x-gateway-credits": "0"}), None
        kept = PredictAnswer.of(generated, params.include_rai_reason)
        return kept.live_response(generated), kept

    return await with_idempotency(request, post, produce)


async def generate_content(request: Request, model: str, post: GooglePostDep) -> Response:
    """One canonical request, the same pipeline as every route; Gemini's body in and out."""
    image_request = parse_generate_content_request(model, post.body)

    async def produce(keep_files: bool) -> tuple[Response, ReplayTemplate | None]:
        try:
            generated = await _generate(request, post, image_request, keep_files)
        except AllImagesFiltered as filtered:
            # Gemini answers 200 with withheld candidates. Nothing was charged, so nothing is kept
            # for replay: a retry with the same key runs again.
            served = (await post.gateway.catalog.get()).resolve(model)  # modelVersion: the catalog id
            body = withheld_only(filtered.reasons, model=served.id if served else model, request_id=filtered.request_id)
            return Response(body, media_type="application/json", headers={"x-gateway-credits": "0"}), None
        kept = GenerateContentAnswer.of(generated)
        return kept.live_response(generated), kept

    return await with_idempotency(request, post, produce)


# `predict` reads these from request.path_params (one handler serves every path), so FastAPI cannot
# see them: each path declares its own, or clients generated from /openapi.json cannot call it.
_PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "version": {"type": "string", "enum": ["v1", "v1beta1"]},
    "project": {"type": "string"},
    "location": {"type": "string"},
}


def _openapi_extra(path: str, body_schema: str = "PredictBody") -> dict[str, Any]:
    body = _openapi_body(body_schema)
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in _PATH_PARAMETERS.items()
        if f"{{{name}}}" in path
    ]
    return {**body, "parameters": parameters} if parameters else body


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
        response_model=PredictResponse,
        responses=GOOGLE_ERROR_RESPONSES,
        openapi_extra=_openapi_extra(_path),
        # Route dependencies run before the endpoint's: an unknown version is a 404 before a 401.
        dependencies=[Depends(known_version)],
    )

for _path in GENERATE_CONTENT_PATHS:
    router.add_api_route(
        _path,
        generate_content,
        methods=["POST"],
        summary="Gemini :generateContent for image models (Google-native relay)",
        description=(
            "Gemini's request and response format, for the catalog's image models (an id or alias "
            "names the model; any other model is 404 NOT_FOUND), so google-genai's "
            "`client.models.generate_content` works pointed at the gateway. The text parts of the one "
            "user turn are the prompt; `generationConfig.imageConfig.aspectRatio` and `imageSize` "
            "(1K, 2K) shape the image, `candidateCount` is the number of images (one per candidate), "
            "`responseModalities` must include IMAGE. Image input, multi-turn chats, tools, safety "
            "settings and sampling options are 400 before anything is held. Each image is a candidate "
            "with `inlineData`; text the upstream answered beside it is passed through as a text part; "
            "withheld images are candidates with finishReason IMAGE_SAFETY. Billed per image like "
            "every route: the credits are in the x-gateway-credits header, and x-gateway-placeholder: "
            "true marks a placeholder answer. Auth: Bearer, x-goog-api-key or ?key=."
        ),
        response_model=GenerateContentResponse,
        responses=GOOGLE_ERROR_RESPONSES,
        openapi_extra=_openapi_extra(_path, "GenerateContentBody"),
        dependencies=[Depends(known_version)],
    )
