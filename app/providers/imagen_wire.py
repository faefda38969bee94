"""Google's Imagen `:predict` wire format as pure functions: which target a channel is, what it can
honour, the request body, and the response turned into delivered images.

Field names as Google documents them (checked 2026-11):
- Vertex AI "Imagen API" model reference and the REST type `VisionGenerativeModelParams`:
  `instances[0].prompt`; `parameters.sampleCount` (default 4), `aspectRatio`, `sampleImageSize`
  (`1K`/`2K`, Imagen 4 Standard/Ultra only, case-insensitive), `negativePrompt`, `seed` (only with
  `addWatermark: false`; watermarking defaults to on), `personGeneration`, `includeRaiReason`,
  `outputOptions.mimeType`.
- google-genai SDKs (`_GenerateImagesConfig_to_vertex`, `generateImagesConfigToMldev`): the Gemini
  API takes `sampleCount`, `aspectRatio`, `sampleImageSize`, `personGeneration`,
  `includeRaiReason` and `outputOptions.mimeType`, and refuses `negativePrompt`, `seed`,
  `addWatermark` and `enhancePrompt`.
- Response: `predictions[]` of `{bytesBase64Encoded, mimeType}`; a filtered image is missing or,
  with `includeRaiReason`, an item holding only `raiFilteredReason`; prompt safety metadata comes as
  an item with `contentType: "Positive Prompt"`; every image filtered is HTTP 200 with `{}`.

The upstream's `mimeType` is never believed: each image is checked and typed from its bytes
(app/providers/image_check.py).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import msgspec

from app.images import DEFAULT_IMAGE_SIZE, MIME_TYPES, GeneratedImage, ImageRequest, ImageResult
from app.providers.answer_json import Raw, base64_text, decode_answer, is_absent, value
from app.providers.errors import ContentFiltered, UpstreamRetryable
from app.providers.image_check import checked_image
from app.specs import ChannelSpec

# Vertex URLs name the publisher (`…/publishers/google`, regional or express mode); the Gemini API
# and relays do not. Only Vertex accepts the full parameter set.
VERTEX_PATH_MARK = "/publishers/google"
VERTEX_ONLY = ("negative_prompt", "seed")


# The Gemini API, where both Google adapters send a channel whose base_url is left empty.
GEMINI_API_BASE = "https://generativelanguage.googleapis.com/v1beta"


def google_base(channel: ChannelSpec) -> str:
    """The channel's base URL, or the Gemini API's when the operator left it empty."""
    return channel.base_url or GEMINI_API_BASE


def is_vertex(channel: ChannelSpec) -> bool:
    path = urlsplit(google_base(channel)).path
    return VERTEX_PATH_MARK in path or bool(channel.auth.get("service_account_file"))


def is_fast(upstream_model: str) -> bool:
    """Imagen Fast models take no `sampleImageSize` and make 1K images only."""
    return "fast" in upstream_model.lower()


def unsupported_parameters(request: ImageRequest, *, vertex: bool, fast: bool) -> list[str]:
    # Provider extras (OpenAI's quality, background) have no Imagen equivalent anywhere.
    names = sorted(request.extra)
    if not vertex:
        names.extend(name for name in VERTEX_ONLY if getattr(request, name) is not None)
    if fast and request.image_size != DEFAULT_IMAGE_SIZE:
        names.append("image_size")
    return names


def predict_url(base_url: str, upstream_model: str) -> str:
    return f"{base_url.rstrip('/')}/models/{upstream_model}:predict"


def predict_body(request: ImageRequest, *, vertex: bool, fast: bool) -> dict[str, Any]:
    """The `:predict` body. Callers check `unsupported_parameters` first: nothing is dropped here."""
    parameters: dict[str, Any] = {
        # Always sent: Google's default is 4 images, and every one of them would be billed upstream.
        "sampleCount": request.n,
        "aspectRatio": request.aspect_ratio,
        "outputOptions": {"mimeType": MIME_TYPES[request.output_format]},
        # Filtered images then come back as reasons the caller can see, not silently missing.
        "includeRaiReason": True,
    }
    if not fast:
        parameters["sampleImageSize"] = request.image_size
    if request.person_generation is not None:
        parameters["personGeneration"] = request.person_generation
    if vertex:
        parameters.update(_vertex_parameters(request))
    return {"instances": [{"prompt": request.prompt}], "parameters": parameters}


def _vertex_parameters(request: ImageRequest) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if request.negative_prompt is not None:
        extra["negativePrompt"] = request.negative_prompt
    if request.seed is not None:
        extra["seed"] = request.seed
        # Vertex ignores (or refuses) a seed while the SynthID watermark is on.
        extra["addWatermark"] = False
    return extra


class _Answer(msgspec.Struct):
    # Each prediction's fields stay raw: the image is passed through, the rest decoded on demand.
    predictions: list[dict[str, Raw]] | None = None


def parse_predictions(body: bytes | bytearray, *, requested: int) -> ImageResult:
    """Delivered images (base64 text passed through untouched) and the reasons for filtered ones.

    Raises `ContentFiltered` when nothing was delivered and `UpstreamRetryable` for a 200 answer
    that is not Imagen's shape or holds something that is not an image (`{}`, Google's answer when
    every image was filtered, is no image).
    """
    predictions = decode_answer(body, _Answer, "an Imagen :predict response").predictions or []
    images: list[GeneratedImage] = []
    reasons: list[str] = []
    for index, item in enumerate(predictions):
        image = _image(item, index)
        if image is not None:
            images.append(image)
        elif isinstance(reason := value(item.get("raiFilteredReason")), str):
            reasons.append(reason)
    if not images:
        raise ContentFiltered(reasons)
    # The hold covers `requested` images; an upstream that ignores sampleCount is not billed beyond it.
    return ImageResult(images=images[:requested], filtered_reasons=reasons)


def _image(item: dict[str, Raw], index: int) -> GeneratedImage | None:
    """The image in one prediction, or None for a filter reason or safety metadata."""
    encoded = item.get("bytesBase64Encoded")
    if is_absent(encoded):
        if isinstance(value(item.get("raiFilteredReason")), str) or _is_metadata(item):
            return None
        raise UpstreamRetryable(
            f"the upstream answered 200 but prediction {index} has neither bytesBase64Encoded nor raiFilteredReason",
            status=200,
        )
    text = base64_text(encoded)
    if text is None:
        raise UpstreamRetryable(
            f"the upstream answered 200 but prediction {index} has an empty or non-text bytesBase64Encoded",
            status=200,
        )
    return checked_image(text, f"prediction {index}'s bytesBase64Encoded")


def _is_metadata(item: dict[str, Raw]) -> bool:
    """Safety attributes of the prompt (`contentType: "Positive Prompt"`), not an image."""
    content_type = value(item.get("contentType"))
    return isinstance(content_type, str) and not content_type.startswith("image/")
