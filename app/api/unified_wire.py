"""The unified/OpenAI images dialect: body → `ImageRequest`, `Generated` → response body.

Accepts OpenAI's names (`n`, `size`, `response_format`, …) and the unified ones (`num_images`,
`aspect_ratio`, `image_size`, …) in one schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from app.api.errors import describe_validation_errors
from app.errors import InvalidValue, UnsupportedParameter
from app.files.signing import UrlSigner
from app.generation.service import Generated
from app.images import ASPECT_RATIOS, DIMENSIONS, ImageRequest

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


def _dimensions(body: ImagesGenerationBody) -> tuple[str, str]:
    aspect_ratio = body.aspect_ratio
    if aspect_ratio is not None and aspect_ratio not in ASPECT_RATIOS:
        raise InvalidValue(
            f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}; got {aspect_ratio!r}.",
            param="aspect_ratio",
        )
    image_size = body.image_size
    if image_size is not None and image_size not in ("1K", "2K"):
        raise InvalidValue(f"image_size must be 1K or 2K; got {body.image_size!r}.", param="image_size")
    if body.size is None or body.size == "auto":
        return aspect_ratio or "1:1", image_size or "1K"
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


def images_body(generated: Generated, data: list[dict[str, str]]) -> dict[str, Any]:
    """The response body around its `data` items (base64, URLs, or file references to keep)."""
    body: dict[str, Any] = {
        "id": generated.request_id,
        "created": generated.created,
        "model": generated.model.id,
        "data": data,
        "filtered": [{"reason": reason} for reason in generated.filtered_reasons],
        "billing": generated.billing.to_json(),
    }
    if generated.provider == "local":
        body["placeholder"] = True
    return body


def image_items(generated: Generated, response_format: str, signer: UrlSigner, base_url: str) -> list[dict[str, Any]]:
    """The `data` items, for orjson.dumps (the base64 is a Fragment: spliced in, not re-encoded)."""
    if response_format == "url":
        return [{"url": signer.url(base_url, f.id), "mime_type": f.content_type} for f in generated.files]
    return [{"b64_json": image.b64.fragment(), "mime_type": image.mime_type} for image in generated.images]
