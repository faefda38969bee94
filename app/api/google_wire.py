"""Google's Imagen `:predict` dialect: body → `ImageRequest`, `Generated` → `predictions[]`.

Accepts what Imagen clients send (the google-genai SDK, Vertex and Gemini API callers, and the
relay documents): `instances[0].prompt` and `parameters` in camelCase, enum values in either case,
the image size as `sampleImageSize` (Google's wire name) or `imageSize` (relays' name).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from app.api.errors import describe_validation_errors
from app.errors import InvalidValue, UnsupportedParameter
from app.generation.service import Generated
from app.images import ASPECT_RATIOS, ImageRequest

# Google generates four images when sampleCount is absent; a faithful relay does the same.
GOOGLE_DEFAULT_SAMPLE_COUNT = 4
MIME_TO_FORMAT = {"image/png": "png", "image/jpeg": "jpeg"}


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
    if size is not None and size not in ("1K", "2K"):
        raise InvalidValue(f"sampleImageSize must be 1K or 2K; got {size!r}.", param="parameters.sampleImageSize")
    aspect_ratio = params.aspect_ratio or "1:1"
    if aspect_ratio not in ASPECT_RATIOS:
        raise InvalidValue(
            f"aspectRatio must be one of {', '.join(ASPECT_RATIOS)}; got {aspect_ratio!r}.",
            param="parameters.aspectRatio",
        )
    if params.person_generation is not None and params.person_generation not in (
        "dont_allow",
        "allow_adult",
        "allow_all",
    ):
        raise InvalidValue(
            "personGeneration must be DONT_ALLOW, ALLOW_ADULT or ALLOW_ALL.", param="parameters.personGeneration"
        )
    return (
        ImageRequest(
            model=model,
            prompt=prompt,
            n=params.sample_count or GOOGLE_DEFAULT_SAMPLE_COUNT,
            aspect_ratio=aspect_ratio,
            image_size=size or "1K",
            seed=params.seed,
            negative_prompt=params.negative_prompt,
            person_generation=params.person_generation,
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


def _output_format(options: OutputOptions | None) -> str:
    if options is None or options.mime_type is None:
        return "png"
    output_format = MIME_TO_FORMAT.get(options.mime_type.lower())
    if output_format is None:
        raise InvalidValue(
            "outputOptions.mimeType must be image/png or image/jpeg.", param="parameters.outputOptions.mimeType"
        )
    return output_format


def render_predictions(generated: Generated, include_rai_reason: bool) -> bytes:
    predictions: list[dict[str, Any]] = [
        {"bytesBase64Encoded": image.b64.fragment(), "mimeType": image.mime_type} for image in generated.images
    ]
    if include_rai_reason:
        predictions.extend({"raiFilteredReason": reason} for reason in generated.filtered_reasons)
    return orjson.dumps({"predictions": predictions})


def empty_prediction() -> bytes:
    """What Google answers when every image was filtered: HTTP 200 with `{}`."""
    return b"{}"


def rai_only(reasons: list[str]) -> bytes:
    return orjson.dumps({"predictions": [{"raiFilteredReason": reason} for reason in reasons]})
