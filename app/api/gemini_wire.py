"""Gemini's `:generateContent` dialect for image models: body → `ImageRequest`, `Generated` →
`candidates[]` (live and replayed, both from one `GenerateContentAnswer`).

Wire facts, checked against google-genai 3.6 (`GenerateContentConfig`, `ImageConfig`, `Candidate`,
`Part`, and what `client.models.generate_content` sends) and the Gemini API image-generation
reference:

- Request: `contents[{role: "user", parts: [{text}]}]` and `generationConfig{responseModalities,
  candidateCount, seed, imageConfig{aspectRatio, imageSize, personGeneration,
  imageOutputOptions{mimeType}}}`, camelCase (snake_case accepted too, as Google's JSON parser
  does). The text parts of the one user turn are the prompt.
- Answer: `candidates[{content{role: "model", parts[{text} | {inlineData{mimeType, data}}]},
  finishReason, index}]`, `modelVersion`, `responseId`. Withheld output is a candidate with a
  safety `finishReason` and no content.

Gateway choices, where Google has none to copy: each image is its own candidate, so
`candidateCount` is the number of images (billed per image); the text parts an upstream answered
beside an image are passed through in that image's candidate. Image input (editing), multi-turn
chats, tools, safety settings and sampling knobs are refused by name, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.api.replay import FileRef, ReplayContext, file_refs, placeholder_headers, read_base64, refs_from_json
from app.billing.amounts import render as render_amount
from app.errors import InvalidRequest, InvalidValue, UnsupportedParameter
from app.generation.results import Generated
from app.http.errors import describe_validation_errors
from app.images import (
    ASPECT_RATIOS,
    DEFAULT_ASPECT_RATIO,
    DEFAULT_IMAGE_SIZE,
    IMAGE_SIZES,
    ImageRequest,
    OutputFormat,
    PersonGeneration,
    is_aspect_ratio,
    is_image_size,
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MODALITIES = ("TEXT", "IMAGE")
# Gemini's imageConfig.personGeneration values, in the canonical request's words.
PERSON_GENERATION: dict[str, PersonGeneration] = {
    "ALLOW_NONE": "dont_allow",
    "ALLOW_ADULT": "allow_adult",
    "ALLOW_ALL": "allow_all",
}
MIME_TO_FORMAT: dict[str, OutputFormat] = {"image/png": "png", "image/jpeg": "jpeg"}
# Part kinds that carry an image (or a file) in: the relay does not edit images.
IMAGE_INPUT_PARTS = frozenset({"inlineData", "inline_data", "fileData", "file_data"})
# Google's finish reason for an image its safety system withheld.
WITHHELD_FINISH_REASON = "IMAGE_SAFETY"


class ImageOutputOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    mime_type: str | None = Field(None, alias="mimeType")
    compression_quality: int | None = Field(None, alias="compressionQuality")


class ImageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    aspect_ratio: str | None = Field(None, alias="aspectRatio", description="1:1, 3:4, 4:3, 9:16 or 16:9.")
    image_size: str | None = Field(None, alias="imageSize", description="1K or 2K (4K is not offered).")
    person_generation: str | None = Field(
        None, alias="personGeneration", description="ALLOW_NONE, ALLOW_ADULT or ALLOW_ALL, where the model has it."
    )
    image_output_options: ImageOutputOptions | None = Field(None, alias="imageOutputOptions")

    @field_validator("image_size", "person_generation", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class GenerationConfig(BaseModel):
    # Other generationConfig fields (temperature, thinkingConfig…) are kept to be refused by name.
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    response_modalities: list[str] | None = Field(
        None, alias="responseModalities", description="Must include IMAGE; TEXT may be added."
    )
    candidate_count: int | None = Field(
        None, alias="candidateCount", ge=1, le=10, description="Images to generate, one per candidate (default 1)."
    )
    seed: int | None = Field(None, ge=INT32_MIN, le=INT32_MAX)
    image_config: ImageConfig | None = Field(None, alias="imageConfig")

    @field_validator("response_modalities", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return [v.upper() if isinstance(v, str) else v for v in value] if isinstance(value, list) else value


class Part(BaseModel):
    # Every part kind but text (inlineData, fileData, functionCall…) is kept to be refused by name.
    model_config = ConfigDict(extra="allow")
    text: str | None = None


class Content(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str | None = None
    parts: list[Part] = Field(min_length=1)


class GenerateContentBody(BaseModel):
    """`POST …/models/{model}:generateContent` for image models, Gemini's request format."""

    # Other top-level fields (tools, safetySettings, systemInstruction…) are refused by name.
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    contents: list[Content] = Field(min_length=1, description="One user turn; its text parts are the prompt.")
    generation_config: GenerationConfig = Field(default_factory=GenerationConfig, alias="generationConfig")


def parse_generate_content_request(model: str, raw: dict[str, Any]) -> ImageRequest:
    try:
        body = GenerateContentBody.model_validate(raw)
    except ValidationError as exc:
        raise describe_validation_errors(exc.errors()) from None
    _refuse_extras(body.model_extra, "")
    config = body.generation_config
    _refuse_extras(config.model_extra, "generationConfig.")
    _check_modalities(config.response_modalities)
    image_config = config.image_config or ImageConfig()
    size = image_config.image_size or DEFAULT_IMAGE_SIZE
    if not is_image_size(size):
        raise InvalidValue(
            f"generationConfig.imageConfig.imageSize must be one of {', '.join(IMAGE_SIZES)}; got {size!r}.",
            param="generationConfig.imageConfig.imageSize",
        )
    aspect_ratio = image_config.aspect_ratio or DEFAULT_ASPECT_RATIO
    if not is_aspect_ratio(aspect_ratio):
        raise InvalidValue(
            f"generationConfig.imageConfig.aspectRatio must be one of {', '.join(ASPECT_RATIOS)}; "
            f"got {aspect_ratio!r}.",
            param="generationConfig.imageConfig.aspectRatio",
        )
    return ImageRequest(
        model=model,
        prompt=_prompt(body.contents),
        n=config.candidate_count or 1,
        aspect_ratio=aspect_ratio,
        image_size=size,
        # Gemini's seed is int32; the canonical one is uint32, read back the way the gemini-image
        # adapter writes it, so a seed relayed to Gemini arrives as sent.
        seed=config.seed % 2**32 if config.seed is not None else None,
        person_generation=_person_generation(image_config.person_generation),
        output_format=_output_format(image_config.image_output_options),
    )


def _refuse_extras(extras: dict[str, Any] | None, prefix: str) -> None:
    """Gemini fields the relay cannot honour for every channel are a 400 naming the first one."""
    if extras:
        name = f"{prefix}{sorted(extras)[0]}"
        raise UnsupportedParameter(f"{name} is not supported by the image relay; omit it.", param=name)


def _check_modalities(modalities: list[str] | None) -> None:
    if modalities is None:
        return  # Google's image models answer images (and maybe text) by default
    for value in modalities:
        if value not in MODALITIES:
            raise InvalidValue(
                f"generationConfig.responseModalities must hold IMAGE and optionally TEXT; got {value!r}.",
                param="generationConfig.responseModalities",
            )
    if "IMAGE" not in modalities:
        raise InvalidValue(
            "generationConfig.responseModalities must include IMAGE: this gateway serves image models only.",
            param="generationConfig.responseModalities",
        )


def _prompt(contents: list[Content]) -> str:
    """The prompt: the text parts of the one user turn, in order."""
    if len(contents) != 1 or contents[0].role not in (None, "user"):
        raise UnsupportedParameter(
            "contents must be one user turn: multi-turn (conversational) editing is not supported.",
            param="contents",
        )
    texts: list[str] = []
    for index, part in enumerate(contents[0].parts):
        if part.model_extra:
            name = sorted(part.model_extra)[0]
            what = "image input (editing)" if name in IMAGE_INPUT_PARTS else name
            raise UnsupportedParameter(
                f"contents[0].parts[{index}].{name}: {what} is not supported; send text parts only.",
                param=f"contents.0.parts.{index}.{name}",
            )
        if part.text is not None:
            texts.append(part.text)
    prompt = "\n".join(texts)
    if not prompt.strip():
        raise InvalidRequest("contents[0].parts must hold a non-blank text prompt.", param="contents.0.parts")
    return prompt


def _person_generation(value: str | None) -> PersonGeneration | None:
    if value is None:
        return None
    canonical = PERSON_GENERATION.get(value)
    if canonical is None:
        raise InvalidValue(
            "generationConfig.imageConfig.personGeneration must be ALLOW_NONE, ALLOW_ADULT or ALLOW_ALL.",
            param="generationConfig.imageConfig.personGeneration",
        )
    return canonical


def _output_format(options: ImageOutputOptions | None) -> OutputFormat:
    if options is None:
        return "png"
    if options.compression_quality is not None:
        raise UnsupportedParameter(
            "generationConfig.imageConfig.imageOutputOptions.compressionQuality is not supported.",
            param="generationConfig.imageConfig.imageOutputOptions.compressionQuality",
        )
    if options.mime_type is None:
        return "png"
    output_format = MIME_TO_FORMAT.get(options.mime_type.lower())
    if output_format is None:
        raise InvalidValue(
            "generationConfig.imageConfig.imageOutputOptions.mimeType must be image/png or image/jpeg.",
            param="generationConfig.imageConfig.imageOutputOptions.mimeType",
        )
    return output_format


@dataclass(frozen=True)
class GenerateContentAnswer:
    """A generation's answer in Gemini's format, and the replay template of kind
    "generate_content": the live response and its replay are both rendered from it."""

    kind: ClassVar[str] = "generate_content"
    model: str
    request_id: str
    files: tuple[FileRef, ...]
    texts: tuple[str | None, ...]  # the upstream's words beside each image, if any
    withheld: tuple[str, ...]  # why each withheld image was withheld
    headers: dict[str, str]

    @classmethod
    def of(cls, generated: Generated) -> GenerateContentAnswer:
        return cls(
            model=generated.model.id,
            request_id=generated.request_id,
            files=file_refs(generated.files),
            texts=tuple(image.text for image in generated.images),
            withheld=tuple(generated.filtered_reasons),
            headers={
                "x-gateway-request-id": generated.request_id,
                "x-gateway-credits": render_amount(generated.billing.credits),
                "x-gateway-balance": render_amount(generated.billing.balance),
                # Gemini's body has no place for it (and its SDK drops unknown fields): header only.
                **placeholder_headers(generated.placeholder),
            },
        )

    def live_response(self, generated: Generated) -> Response:
        # The base64 is a Fragment: spliced into the JSON as it came, not re-encoded.
        images = [(image.b64.fragment(), image.mime_type) for image in generated.images]
        return self._response(images)

    async def render(self, context: ReplayContext) -> Response:
        return self._response(await read_base64(context.files, self.files))

    def _response(self, images: Sequence[tuple[str | orjson.Fragment, str]]) -> Response:
        body = candidates_body(images, self.texts, self.withheld, model=self.model, request_id=self.request_id)
        return Response(body, media_type="application/json", headers=self.headers)

    async def served_model(self, context: ReplayContext) -> str | None:
        return self.model

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model": self.model,
            "request_id": self.request_id,
            "files": [ref.to_json() for ref in self.files],
            "texts": list(self.texts),
            "withheld": list(self.withheld),
            "headers": self.headers,
        }

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> GenerateContentAnswer:
        return cls(
            model=str(stored["model"]),
            request_id=str(stored["request_id"]),
            files=refs_from_json(stored["files"]),
            texts=tuple(stored.get("texts", ())),
            withheld=tuple(stored.get("withheld", ())),
            headers=dict(stored.get("headers", {})),
        )


def candidates_body(
    images: Sequence[tuple[str | orjson.Fragment, str]],
    texts: Sequence[str | None],
    withheld: Sequence[str],
    *,
    model: str,
    request_id: str,
) -> bytes:
    """Delivered images first (the SDK's `response.parts` reads the first candidate), then one
    content-less candidate per withheld image."""
    candidates: list[dict[str, Any]] = []
    for index, (b64, mime_type) in enumerate(images):
        text = texts[index] if index < len(texts) else None
        parts: list[dict[str, Any]] = [{"text": text}] if text else []
        parts.append({"inlineData": {"mimeType": mime_type, "data": b64}})
        candidates.append({"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": index})
    for reason in withheld:
        candidates.append({"finishReason": WITHHELD_FINISH_REASON, "finishMessage": reason, "index": len(candidates)})
    return orjson.dumps({"candidates": candidates, "modelVersion": model, "responseId": request_id})


def withheld_only(reasons: Sequence[str], *, model: str, request_id: str) -> bytes:
    """Every image was withheld: 200 with a content-less candidate for each, as Gemini answers."""
    return candidates_body([], [], reasons or [WITHHELD_FINISH_REASON], model=model, request_id=request_id)
