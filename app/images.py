"""The canonical request and result: what every wire format is translated into and out of.

Nothing past the HTTP edge knows whether the caller spoke OpenAI, the unified dialect or Google's
`:predict`; the pipeline, routing and adapters see only these types.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, TypeGuard, get_args

import orjson

# The request's enumerated fields: each type, and the tuple of its values the edge checks against
# (made from the type, so the two cannot drift apart).
AspectRatio = Literal["1:1", "3:4", "4:3", "9:16", "16:9"]
ImageSize = Literal["1K", "2K"]
PersonGeneration = Literal["dont_allow", "allow_adult", "allow_all"]
OutputFormat = Literal["png", "jpeg"]
ResponseFormat = Literal["b64_json", "url"]

ASPECT_RATIOS: tuple[AspectRatio, ...] = get_args(AspectRatio)
IMAGE_SIZES: tuple[ImageSize, ...] = get_args(ImageSize)
PERSON_GENERATION: tuple[PersonGeneration, ...] = get_args(PersonGeneration)
OUTPUT_FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)
RESPONSE_FORMATS: tuple[ResponseFormat, ...] = get_args(ResponseFormat)
DEFAULT_ASPECT_RATIO: AspectRatio = "1:1"
DEFAULT_IMAGE_SIZE: ImageSize = "1K"  # also the only size some models offer
MIME_TYPES: dict[OutputFormat, str] = {"png": "image/png", "jpeg": "image/jpeg"}


def is_aspect_ratio(value: object) -> TypeGuard[AspectRatio]:
    return value in ASPECT_RATIOS


def is_image_size(value: object) -> TypeGuard[ImageSize]:
    return value in IMAGE_SIZES


def is_person_generation(value: object) -> TypeGuard[PersonGeneration]:
    return value in PERSON_GENERATION


# Optional parameters a model may declare in its catalog entry; anything else is refused.
OPTIONAL_PARAMETERS = ("negative_prompt", "seed", "person_generation", "quality", "background")

# Provider options a catalog model may carry (`CatalogModel.options`), each with its allowed values:
# set by the operator, never by a caller, and passed to whichever adapter serves the model (an
# adapter that has no such setting ignores it). Ideogram's rendering speed is one: `ideogram-v3`
# and `ideogram-v3-turbo` are the same upstream model at two speeds and two prices.
PROVIDER_OPTIONS: dict[str, tuple[str, ...]] = {"rendering_speed": ("TURBO", "DEFAULT", "QUALITY")}

# Pixel dimensions for each (image size, aspect ratio): Imagen's documented output sizes, which
# the gateway uses as its canonical table for every model.
DIMENSIONS: dict[tuple[ImageSize, AspectRatio], tuple[int, int]] = {
    ("1K", "1:1"): (1024, 1024),
    ("1K", "3:4"): (896, 1280),
    ("1K", "4:3"): (1280, 896),
    ("1K", "9:16"): (768, 1408),
    ("1K", "16:9"): (1408, 768),
    ("2K", "1:1"): (2048, 2048),
    ("2K", "3:4"): (1792, 2560),
    ("2K", "4:3"): (2560, 1792),
    ("2K", "9:16"): (1536, 2816),
    ("2K", "16:9"): (2816, 1536),
}


@dataclass(frozen=True, slots=True)
class ImageRequest:
    model: str  # as the caller named it: an id or an alias
    prompt: str
    n: int = 1
    aspect_ratio: AspectRatio = DEFAULT_ASPECT_RATIO
    image_size: ImageSize = DEFAULT_IMAGE_SIZE
    seed: int | None = None
    negative_prompt: str | None = None
    person_generation: PersonGeneration | None = None
    output_format: OutputFormat = "png"
    response_format: ResponseFormat = "b64_json"
    user: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # Provider parameters the model must declare (e.g. OpenAI's quality); see OPTIONAL_PARAMETERS.
    extra: dict[str, Any] = field(default_factory=dict)
    # The resolved catalog model's provider options (PROVIDER_OPTIONS), set by the generation service,
    # never by the edge: what the operator priced, not what the caller asked.
    options: dict[str, str] = field(default_factory=dict)
    # Store the images as files even when the caller wants base64 (an Idempotency-Key replay
    # is rendered from files, never from base64 kept in the database).
    keep_files: bool = False

    @property
    def dimensions(self) -> tuple[int, int]:
        return DIMENSIONS[(self.image_size, self.aspect_ratio)]

    def optional_parameters(self) -> list[str]:
        """Names of the optional parameters this request actually uses."""
        used = [name for name in ("negative_prompt", "seed", "person_generation") if getattr(self, name) is not None]
        return used + sorted(self.extra)


class Base64Text:
    """An image's base64 text, held as the JSON string it arrived in (quotes included).

    Upstream answers are decoded with the image fields left as raw JSON (msgspec.Raw), and
    responses splice this token in as it is (`orjson.Fragment`): a multi-megabyte image is never
    turned into a Python str and back, which cost ~10 ms per 5 MB image and one more full-size
    copy for every request in flight (design.md: pass the upstream text through).
    """

    __slots__ = ("json",)

    def __init__(self, json_token: bytes) -> None:
        self.json = json_token

    @classmethod
    def of(cls, text: str) -> Base64Text:
        """From base64 text in a Python str (images made or fetched by the gateway itself)."""
        return cls(orjson.dumps(text))

    def fragment(self) -> orjson.Fragment:
        """For orjson.dumps: written out as is, without another pass over the text."""
        return orjson.Fragment(self.json)

    def head(self, chars: int) -> bytes:
        """The first `chars` characters of the text, without decoding the rest. Only the `\\/`
        escape (some JSON encoders write slashes so) can occur in base64; it is undone."""
        return self.json[1 : 1 + 2 * chars].replace(b"\\/", b"/")[:chars]

    def text(self) -> str:
        decoded = orjson.loads(self.json)
        if not isinstance(decoded, str):
            raise ValueError("not a JSON string")
        return decoded

    def decode(self) -> bytes:
        """The image bytes; ValueError if the text is not valid base64."""
        try:
            return base64.b64decode(self.text(), validate=True)
        except binascii.Error:
            raise ValueError("not valid base64") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Base64Text) and other.json == self.json

    def __hash__(self) -> int:
        return hash(self.json)

    def __repr__(self) -> str:
        return f"Base64Text({len(self.json) - 2} characters)"


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    # Base64 text exactly as produced upstream: passed through, never decoded and re-encoded.
    b64: Base64Text
    mime_type: str
    # Words the upstream answered beside this image (Gemini's text parts); formats that have a
    # place for them (the `:generateContent` relay) pass them through, the others leave them out.
    text: str | None = None


@dataclass(frozen=True, slots=True)
class ImageResult:
    images: list[GeneratedImage]
    filtered_reasons: list[str] = field(default_factory=list)
    # What the provider itself says the call cost, in its currency (xAI's usage.cost_in_usd_ticks,
    # Kling's final_unit_deduction…); when set, it is the attempt's upstream_cost instead of the
    # channel's price table.
    upstream_cost: Decimal | None = None
    # The provider's own usage block as it answered it (OpenAI's token counts…), kept on the attempt.
    usage: dict[str, Any] | None = None


# What the gateway delivers, read from the bytes (never from an upstream's label).
ACCEPTED_TYPES = ("image/png", "image/jpeg", "image/webp")


def sniff_image_type(head: bytes) -> str | None:
    """The image type from its first bytes (at least 12 for WebP), or None when it is not an
    image the gateway delivers."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None
