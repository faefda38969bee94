"""The unified/OpenAI images dialect: body → `ImageRequest`, `Generated` → response body (live and
replayed, both from one `ImagesAnswer`).

Accepts OpenAI's names (`n`, `size`, `response_format`, …) and the unified ones (`num_images`,
`aspect_ratio`, `image_size`, …) in one schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import orjson
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from app.api.replay import FileRef, ReplayContext, file_refs, placeholder_headers, read_base64, refs_from_json
from app.errors import InvalidValue, UnsupportedParameter
from app.files.signing import UrlSigner
from app.generation.results import Generated
from app.http.errors import describe_validation_errors
from app.images import (
    ASPECT_RATIOS,
    DEFAULT_ASPECT_RATIO,
    DEFAULT_IMAGE_SIZE,
    DIMENSIONS,
    AspectRatio,
    ImageRequest,
    ImageSize,
    is_aspect_ratio,
    is_image_size,
)

SEED_MAX = 4_294_967_295
NEUTRAL_VALUES: dict[str, object] = {
    "quality": "auto",
    "background": "auto",
    "moderation": "auto",
    "stream": False,
}


class ImagesGenerationBody(BaseModel):
    """`POST /v1/images/generations`. Unknown fields are refused by name."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: Annotated[str, StringConstraints(min_length=1)] = Field(description="What to draw; non-empty.")
    model: str = Field("imagen4", description="Model id or alias (GET /v1/models).")
    n: int | None = Field(None, ge=1, le=10, description="Number of images (OpenAI name).")
    num_images: int | None = Field(None, ge=1, le=10, description="Number of images (unified name).")
    aspect_ratio: str | None = Field(None, description="1:1, 3:4, 4:3, 9:16 or 16:9 (default 1:1).")
    size: str | None = Field(None, description="OpenAI-style WxH or auto; must match a supported ratio and size.")
    image_size: str | None = Field(None, description="1K or 2K (default 1K).")
    negative_prompt: str | None = None
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    person_generation: Literal["dont_allow", "allow_adult", "allow_all"] | None = None
    output_format: Literal["png", "jpeg"] = "png"
    response_format: Literal["b64_json", "url"] = "b64_json"
    user: Annotated[str, StringConstraints(max_length=200)] | None = None
    metadata: dict[str, Annotated[str, StringConstraints(max_length=512)]] | None = Field(
        None, description="Up to 16 string pairs, recorded with the usage."
    )
    callback_url: str | None = None
    async_: bool = Field(False, alias="async")
    quality: str | None = None
    background: str | None = None
    moderation: str | None = None
    stream: bool | None = None
    style: str | None = None

    @field_validator("image_size", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("person_generation", "output_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("metadata")
    @classmethod
    def _few_pairs(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and len(value) > 16:
            raise ValueError("at most 16 metadata pairs")
        if value is not None and any(len(k) > 64 for k in value):
            raise ValueError("metadata keys are at most 64 characters")
        return value


def parse_images_request(raw: dict[str, Any]) -> tuple[ImageRequest, ImagesGenerationBody]:
    try:
        body = ImagesGenerationBody.model_validate(raw)
    except ValidationError as exc:
        raise describe_validation_errors(exc.errors()) from None
    if not body.prompt.strip():
        raise InvalidValue("prompt must not be blank.", param="prompt")
    if body.n is not None and body.num_images is not None and body.n != body.num_images:
        raise InvalidValue(f"n ({body.n}) and num_images ({body.num_images}) disagree; send one.", param="n")
    aspect_ratio, image_size = _dimensions(body)
    return (
        ImageRequest(
            model=body.model,
            prompt=body.prompt,
            n=body.n or body.num_images or 1,
            aspect_ratio=aspect_ratio,
            image_size=image_size,
            seed=body.seed,
            negative_prompt=body.negative_prompt,
            person_generation=body.person_generation,
            output_format=body.output_format,
            response_format=body.response_format,
            user=body.user,
            metadata=dict(body.metadata or {}),
            extra=_provider_extras(body),
        ),
        body,
    )


def _dimensions(body: ImagesGenerationBody) -> tuple[AspectRatio, ImageSize]:
    aspect_ratio = body.aspect_ratio
    if not (aspect_ratio is None or is_aspect_ratio(aspect_ratio)):
        raise InvalidValue(
            f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}; got {aspect_ratio!r}.",
            param="aspect_ratio",
        )
    image_size = body.image_size
    if not (image_size is None or is_image_size(image_size)):
        raise InvalidValue(f"image_size must be 1K or 2K; got {body.image_size!r}.", param="image_size")
    if body.size is None or body.size == "auto":
        return aspect_ratio or DEFAULT_ASPECT_RATIO, image_size or DEFAULT_IMAGE_SIZE
    matches = [key for key, dims in DIMENSIONS.items() if f"{dims[0]}x{dims[1]}" == body.size.lower()]
    if not matches:
        raise InvalidValue(
            f"size {body.size!r} is not supported. Supported sizes: auto, {', '.join(supported_sizes())}.",
            param="size",
        )
    size_tier, size_ratio = matches[0]
    if (aspect_ratio and aspect_ratio != size_ratio) or (image_size and image_size != size_tier):
        raise InvalidValue(
            f"size {body.size} means aspect_ratio {size_ratio} and image_size {size_tier}, "
            "which contradicts the other fields; send one or the other.",
            param="size",
        )
    return size_ratio, size_tier


def supported_sizes(
    aspect_ratios: tuple[str, ...] = ASPECT_RATIOS, image_sizes: tuple[str, ...] = ("1K", "2K")
) -> list[str]:
    return [
        f"{w}x{h}" for (tier, ratio), (w, h) in DIMENSIONS.items() if tier in image_sizes and ratio in aspect_ratios
    ]


def _provider_extras(body: ImagesGenerationBody) -> dict[str, Any]:
    """OpenAI fields: neutral values are accepted and ignored; anything else must be a parameter
    the model declares (checked by the pipeline), or is refused here."""
    extras: dict[str, Any] = {}
    for name, neutral in NEUTRAL_VALUES.items():
        value = getattr(body, name)
        if value is None or value == neutral:
            continue
        if name in ("quality", "background"):
            extras[name] = value
        else:
            raise UnsupportedParameter(f"{name}={value!r} is not supported; use {neutral!r} or omit it.", param=name)
    if body.style is not None:
        raise UnsupportedParameter("style is not supported by any model on this gateway; omit it.", param="style")
    return extras


@dataclass(frozen=True)
class ImagesAnswer:
    """A generation's answer in this dialect, and the replay template of kind "images": the live
    response and its replay are both rendered from it, with their `data` items made fresh."""

    kind: ClassVar[str] = "images"
    id: str
    created: int
    model: str
    response_format: str
    files: tuple[FileRef, ...]
    filtered: tuple[str, ...]
    billing: dict[str, Any]
    placeholder: bool

    @classmethod
    def of(cls, generated: Generated, response_format: str) -> ImagesAnswer:
        return cls(
            id=generated.request_id,
            created=generated.created,
            model=generated.model.id,
            response_format=response_format,
            files=file_refs(generated.files),
            filtered=tuple(generated.filtered_reasons),
            billing=generated.billing.to_json(),
            placeholder=generated.placeholder,
        )

    def body(self, data: list[dict[str, Any]]) -> dict[str, Any]:
        """The response body around its `data` items (see `ImagesResponse`)."""
        body: dict[str, Any] = {
            "id": self.id,
            "created": self.created,
            "model": self.model,
            "data": data,
            "filtered": [{"reason": reason} for reason in self.filtered],
            "billing": self.billing,
        }
        if self.placeholder:
            body["placeholder"] = True
        return body

    def live_response(self, generated: Generated, signer: UrlSigner, base_url: str) -> Response:
        if self.response_format == "url":
            data = self._url_items(signer, base_url)
        else:
            # The base64 is a Fragment: spliced into the JSON as it came, not re-encoded.
            data = [_b64_item(image.b64.fragment(), image.mime_type) for image in generated.images]
        return self._response(data)

    async def render(self, context: ReplayContext) -> Response:
        if self.response_format == "url":
            data = self._url_items(context.files.signer, context.base_url)
        else:
            data = [_b64_item(b64, mime) for b64, mime in await read_base64(context.files, self.files)]
        return self._response(data)

    def _response(self, data: list[dict[str, Any]]) -> Response:
        headers = placeholder_headers(self.placeholder)
        return Response(orjson.dumps(self.body(data)), media_type="application/json", headers=headers)

    async def served_model(self, context: ReplayContext) -> str | None:
        return self.model

    def _url_items(self, signer: UrlSigner, base_url: str) -> list[dict[str, Any]]:
        return [{"url": signer.url(base_url, ref.file_id), "mime_type": ref.mime_type} for ref in self.files]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "response_format": self.response_format,
            "files": [ref.to_json() for ref in self.files],
            "body": self.body([]),
        }

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> ImagesAnswer:
        body = stored["body"]
        return cls(
            id=body["id"],
            created=body["created"],
            model=str(stored.get("model", body["model"])),
            response_format=stored["response_format"],
            files=refs_from_json(stored["files"]),
            filtered=tuple(item["reason"] for item in body["filtered"]),
            billing=body["billing"],
            placeholder=bool(body.get("placeholder", False)),
        )


def _b64_item(b64: str | orjson.Fragment, mime_type: str) -> dict[str, Any]:
    return {"b64_json": b64, "mime_type": mime_type}
