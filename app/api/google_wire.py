"""Google's Imagen `:predict` dialect: body → `ImageRequest`, `Generated` → `predictions[]` (live
and replayed, both from one `PredictAnswer`), and Google's error shape.

Accepts what Imagen clients send (the google-genai SDK, Vertex and Gemini API callers, and the
relay documents): `instances[0].prompt` and `parameters` in camelCase, enum values in either case,
the image size as `sampleImageSize` (Google's wire name) or `imageSize` (relays' name).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import orjson
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from app.api.replay import FileRef, ReplayContext, file_refs, placeholder_headers, read_base64, refs_from_json
from app.billing.amounts import render as render_amount
from app.billing.models import UsageRecord
from app.errors import GatewayError, InvalidValue, UnsupportedParameter
from app.generation.results import Generated
from app.http.errors import describe_validation_errors
from app.images import (
    ASPECT_RATIOS,
    DEFAULT_ASPECT_RATIO,
    DEFAULT_IMAGE_SIZE,
    ImageRequest,
    OutputFormat,
    is_aspect_ratio,
    is_image_size,
    is_person_generation,
)

# Google generates four images when sampleCount is absent; a faithful relay does the same.
GOOGLE_DEFAULT_SAMPLE_COUNT = 4
MIME_TO_FORMAT: dict[str, OutputFormat] = {"image/png": "png", "image/jpeg": "jpeg"}


class OutputOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    mime_type: str | None = Field(None, alias="mimeType")
    compression_quality: int | None = Field(None, alias="compressionQuality", ge=0, le=100)


class PredictParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sample_count: int | None = Field(None, alias="sampleCount", ge=1, le=8)
    aspect_ratio: str | None = Field(None, alias="aspectRatio")
    sample_image_size: str | None = Field(None, alias="sampleImageSize")
    image_size: str | None = Field(None, alias="imageSize")
    person_generation: str | None = Field(None, alias="personGeneration")
    negative_prompt: str | None = Field(None, alias="negativePrompt")
    seed: int | None = Field(None, ge=0, le=4_294_967_295)
    add_watermark: bool | None = Field(None, alias="addWatermark")
    enhance_prompt: bool | None = Field(None, alias="enhancePrompt")
    include_rai_reason: bool = Field(False, alias="includeRaiReason")
    include_safety_attributes: bool | None = Field(None, alias="includeSafetyAttributes")
    output_options: OutputOptions | None = Field(None, alias="outputOptions")
    language: str | None = None

    @field_validator("sample_image_size", "image_size", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("person_generation", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class PredictInstance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: Annotated[str, StringConstraints(min_length=1)]


class PredictBody(BaseModel):
    """`POST …/models/{model}:predict`, Imagen's request format."""

    model_config = ConfigDict(extra="forbid")
    instances: list[PredictInstance] = Field(min_length=1, max_length=1)
    parameters: PredictParameters = Field(default_factory=PredictParameters)


def parse_predict_request(model: str, raw: dict[str, Any]) -> tuple[ImageRequest, PredictParameters]:
    try:
        body = PredictBody.model_validate(raw)
    except ValidationError as exc:
        error = describe_validation_errors(exc.errors())
        raise error from None
    params = body.parameters
    prompt = body.instances[0].prompt
    if not prompt.strip():
        raise InvalidValue("instances[0].prompt must not be blank.", param="instances.0.prompt")
    _refuse_unhonourable(params)
    size = params.sample_image_size or params.image_size
    if params.sample_image_size and params.image_size and params.sample_image_size != params.image_size:
        raise InvalidValue("sampleImageSize and imageSize disagree; send one.", param="parameters.sampleImageSize")
    if not (size is None or is_image_size(size)):
        raise InvalidValue(f"sampleImageSize must be 1K or 2K; got {size!r}.", param="parameters.sampleImageSize")
    aspect_ratio = params.aspect_ratio or DEFAULT_ASPECT_RATIO
    if not is_aspect_ratio(aspect_ratio):
        raise InvalidValue(
            f"aspectRatio must be one of {', '.join(ASPECT_RATIOS)}; got {aspect_ratio!r}.",
            param="parameters.aspectRatio",
        )
    person_generation = params.person_generation
    if not (person_generation is None or is_person_generation(person_generation)):
        raise InvalidValue(
            "personGeneration must be DONT_ALLOW, ALLOW_ADULT or ALLOW_ALL.", param="parameters.personGeneration"
        )
    return (
        ImageRequest(
            model=model,
            prompt=prompt,
            n=params.sample_count or GOOGLE_DEFAULT_SAMPLE_COUNT,
            aspect_ratio=aspect_ratio,
            image_size=size or DEFAULT_IMAGE_SIZE,
            seed=params.seed,
            negative_prompt=params.negative_prompt,
            person_generation=person_generation,
            output_format=_output_format(params.output_options),
        ),
        params,
    )


def _refuse_unhonourable(params: PredictParameters) -> None:
    """Google switches that the gateway cannot promise for every route are refused by name
    unless they hold their neutral value, rather than silently ignored."""
    if params.add_watermark is False and params.seed is None:
        raise UnsupportedParameter(
            "addWatermark=false is only accepted together with seed.", param="parameters.addWatermark"
        )
    if params.enhance_prompt:
        raise UnsupportedParameter(
            "enhancePrompt is not supported; omit it or send false.", param="parameters.enhancePrompt"
        )
    if params.include_safety_attributes:
        raise UnsupportedParameter(
            "includeSafetyAttributes is not supported; omit it or send false.",
            param="parameters.includeSafetyAttributes",
        )
    if params.language not in (None, "auto", "en"):
        raise UnsupportedParameter("language must be auto or en.", param="parameters.language")
    if params.output_options is not None and params.output_options.compression_quality is not None:
        raise UnsupportedParameter(
            "outputOptions.compressionQuality is not supported.", param="parameters.outputOptions.compressionQuality"
        )


def _output_format(options: OutputOptions | None) -> OutputFormat:
    if options is None or options.mime_type is None:
        return "png"
    output_format = MIME_TO_FORMAT.get(options.mime_type.lower())
    if output_format is None:
        raise InvalidValue(
            "outputOptions.mimeType must be image/png or image/jpeg.", param="parameters.outputOptions.mimeType"
        )
    return output_format


@dataclass(frozen=True)
class PredictAnswer:
    """A generation's answer in Imagen's format, and the replay template of kind "predict": the
    live response and its replay are both rendered from it."""

    kind: ClassVar[str] = "predict"
    # None in templates kept before they named their model: the usage record names it then.
    model: str | None
    files: tuple[FileRef, ...]
    rai_reasons: tuple[str, ...]  # empty unless the caller sent includeRaiReason
    headers: dict[str, str]

    @classmethod
    def of(cls, generated: Generated, include_rai_reason: bool) -> PredictAnswer:
        return cls(
            model=generated.model.id,
            files=file_refs(generated.files),
            rai_reasons=tuple(generated.filtered_reasons) if include_rai_reason else (),
            headers={
                "x-gateway-request-id": generated.request_id,
                "x-gateway-credits": render_amount(generated.billing.credits),
                "x-gateway-balance": render_amount(generated.billing.balance),
                # Google's body has no place for it (and its SDK drops unknown fields): header only.
                **placeholder_headers(generated.placeholder),
            },
        )

    def live_response(self, generated: Generated) -> Response:
        # The base64 is a Fragment: spliced into the JSON as it came, not re-encoded.
        images = [(image.b64.fragment(), image.mime_type) for image in generated.images]
        return Response(_predictions(images, self.rai_reasons), media_type="application/json", headers=self.headers)

    async def render(self, context: ReplayContext) -> Response:
        images = await read_base64(context.files, self.files)
        return Response(_predictions(images, self.rai_reasons), media_type="application/json", headers=self.headers)

    async def served_model(self, context: ReplayContext) -> str | None:
        if self.model is not None:
            return self.model
        async with context.db.sessions() as session:
            record = await session.get(UsageRecord, self.headers.get("x-gateway-request-id", ""))
        return record.model if record is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model": self.model,
            "response_format": "b64_json",  # the relay always answers base64
            "files": [ref.to_json() for ref in self.files],
            "rai_reasons": list(self.rai_reasons),
            "headers": self.headers,
        }

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> PredictAnswer:
        model = stored.get("model")
        return cls(
            model=str(model) if model is not None else None,
            files=refs_from_json(stored["files"]),
            rai_reasons=tuple(stored.get("rai_reasons", ())),
            headers=dict(stored.get("headers", {})),
        )


def _predictions(images: Sequence[tuple[str | orjson.Fragment, str]], rai_reasons: Sequence[str]) -> bytes:
    predictions: list[dict[str, Any]] = [{"bytesBase64Encoded": b64, "mimeType": mime} for b64, mime in images]
    predictions.extend({"raiFilteredReason": reason} for reason in rai_reasons)
    return orjson.dumps({"predictions": predictions})


def empty_prediction() -> bytes:
    """What Google answers when every image was filtered: HTTP 200 with `{}`."""
    return b"{}"


def rai_only(reasons: list[str]) -> bytes:
    return _predictions([], reasons)


GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "RESOURCE_EXHAUSTED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    422: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def google_error_body(error: GatewayError) -> dict[str, object]:
    """Google's error shape: `{"error": {"code", "message", "status"}}`."""
    return {
        "error": {"code": error.status, "message": error.message, "status": GOOGLE_STATUS.get(error.status, "UNKNOWN")}
    }
