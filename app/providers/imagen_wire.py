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
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from app.catalog.snapshot import ChannelSpec
from app.generation.types import MIME_TYPES, GeneratedImage, ImageRequest, ImageResult
from app.providers.errors import ContentFiltered, UpstreamRetryable

# Vertex URLs name the publisher (`…/publishers/google`, regional or express mode); the Gemini API
# and relays do not. Only Vertex accepts the full parameter set.
VERTEX_PATH_MARK = "/publishers/google"
VERTEX_ONLY = ("negative_prompt", "seed")
DEFAULT_SIZE = "1K"


def is_vertex(channel: ChannelSpec) -> bool:
    path = urlsplit(channel.base_url).path
    return VERTEX_PATH_MARK in path or bool(channel.auth.get("service_account_file"))


def is_fast(upstream_model: str) -> bool:
    """Imagen Fast models take no `sampleImageSize` and make 1K images only."""
    return "fast" in upstream_model.lower()


def unsupported_parameters(request: ImageRequest, *, vertex: bool, fast: bool) -> list[str]:
    # Provider extras (OpenAI's quality, background) have no Imagen equivalent anywhere.
    names = sorted(request.extra)
    if not vertex:
        names.extend(name for name in VERTEX_ONLY if getattr(request, name) is not None)
    if fast and request.image_size != DEFAULT_SIZE:
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


def parse_predictions(body: Any, *, requested: int, default_mime: str) -> ImageResult:
    """Delivered images (base64 text passed through untouched) and the reasons for filtered ones.

    Raises `ContentFiltered` when nothing was delivered and `UpstreamRetryable` for a 200 answer
    that is not Imagen's shape.
    """
    if not isinstance(body, dict):
        raise UpstreamRetryable("the upstream answered 200 with JSON that is not an object", status=200)
    predictions = body.get("predictions")
    if predictions is None:
        predictions = []  # Google's `{}`: every image was filtered
    if not isinstance(predictions, list):
        raise UpstreamRetryable("the upstream answered 200 but `predictions` is not a list", status=200)
    images: list[GeneratedImage] = []
    reasons: list[str] = []
    for index, item in enumerate(predictions):
        image = _image(item, index, default_mime)
        if image is not None:
            images.append(image)
        elif isinstance(item.get("raiFilteredReason"), str):
            reasons.append(item["raiFilteredReason"])
    if not images:
        raise ContentFiltered(reasons)
    # The hold covers `requested` images; an upstream that ignores sampleCount is not billed beyond it.
    return ImageResult(images=images[:requested], filtered_reasons=reasons)


def _image(item: Any, index: int, default_mime: str) -> GeneratedImage | None:
    """The image in one prediction, or None for a filter reason or safety metadata."""
    if not isinstance(item, dict):
        raise UpstreamRetryable(f"the upstream answered 200 but prediction {index} is not an object", status=200)
    encoded = item.get("bytesBase64Encoded")
    if encoded is None:
        if isinstance(item.get("raiFilteredReason"), str) or _is_metadata(item):
            return None
        raise UpstreamRetryable(
            f"the upstream answered 200 but prediction {index} has neither bytesBase64Encoded nor raiFilteredReason",
            status=200,
        )
    if not isinstance(encoded, str) or not encoded:
        raise UpstreamRetryable(
            f"the upstream answered 200 but prediction {index} has an empty or non-text bytesBase64Encoded",
            status=200,
        )
    mime = item.get("mimeType")
    return GeneratedImage(b64=encoded, mime_type=mime if isinstance(mime, str) and mime else default_mime)


def _is_metadata(item: dict[str, Any]) -> bool:
    """Safety attributes of the prompt (`contentType: "Positive Prompt"`), not an image."""
    content_type = item.get("contentType")
    return isinstance(content_type, str) and not content_type.startswith("image/")
