"""The `gemini-image` provider: Gemini image models (`gemini-3.1-flash-image`, `gemini-3-pro-image`)
through `:generateContent`, the upstream that replaced Imagen's `:predict`.

Wire facts, checked against google-genai 3.4 (`types.ImageConfig`, `GenerationConfig`, `Part`,
`FinishReason`, `BlockedReason`, and its request converters `_ImageConfig_to_mldev` /
`_ImageConfig_to_vertex`), the js-genai `ImageConfig` and `FinishReason` reference pages, and the
Gemini API `PromptFeedback.BlockReason` reference:

- Body: `contents[{role:user, parts:[{text}]}]` and `generationConfig{responseModalities:["IMAGE"],
  imageConfig{aspectRatio, imageSize}}`. `imageSize` takes 1K/2K/4K; the five gateway aspect ratios
  are all accepted. There is no negative prompt and no OpenAI quality/background equivalent.
- `generationConfig.seed` (int32) is accepted by the Gemini API and by Vertex.
- `imageConfig.personGeneration` (ALLOW_ALL, ALLOW_ADULT, ALLOW_NONE) and
  `imageConfig.imageOutputOptions.mimeType` exist on Vertex only; the SDK refuses both in Gemini API
  mode. On a Gemini API channel the upstream picks the image format, so an explicit
  `output_format: jpeg` cannot be honoured there. The format delivered is read from the image's
  bytes, never from the part's `mimeType` (app/providers/image_check.py).
- A response carries images in `candidates[].content.parts[].inlineData{mimeType, data}`; parts
  flagged `thought: true` are interim drafts of a thinking model, not deliverables. A refused
  prompt has `promptFeedback.blockReason` and no candidates; withheld output is a candidate whose
  `finishReason` is a safety or policy reason and that holds no image.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from app.images import MIME_TYPES, GeneratedImage, ImageRequest, ImageResult
from app.providers.answer_json import ABSENT, Raw, base64_text, decode_answer
from app.providers.credentials import GoogleTokenSource, RequestAuth, google_auth, redact_error
from app.providers.errors import (
    ContentFiltered,
    UpstreamAmbiguous,
    UpstreamError,
    UpstreamRejected,
    UpstreamRetryable,
)
from app.providers.image_check import checked_image
from app.providers.imagen_wire import google_base
from app.providers.upstream_http import post_json
from app.specs import ChannelSpec

# Finish reasons that mean the upstream withheld the output on purpose: retrying elsewhere would
# be withheld the same way, so these count as filtered (not charged), not as failures.
WITHHOLDING_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_RECITATION",
    }
)
PERSON_GENERATION = {"dont_allow": "ALLOW_NONE", "allow_adult": "ALLOW_ADULT", "allow_all": "ALLOW_ALL"}
# Routing must see the most telling failure when every call failed. A rejection (upstream 4xx)
# says the request or the channel's credentials are wrong: every retry would fail alike and the
# operator must act. Ambiguous comes next: a call may have been generated and billed upstream
# without an answer, so routing must not replay the request on another channel. Retryable is the
# weakest claim and the only one that lets routing fail over.
ERROR_PRECEDENCE: tuple[type[UpstreamError], ...] = (UpstreamRejected, UpstreamAmbiguous, UpstreamRetryable)
REASON_CHARS = 300


@dataclass(frozen=True, slots=True)
class Withheld:
    """One call answered, but the upstream withheld its image."""

    reason: str


CallOutcome = GeneratedImage | Withheld | UpstreamError


class GeminiImageProvider:
    name = "gemini-image"
    placeholder = False

    def __init__(self, http: httpx.AsyncClient, tokens: GoogleTokenSource) -> None:
        self.http = http
        self.tokens = tokens

    def unsupported(self, request: ImageRequest, channel: ChannelSpec, upstream_model: str) -> list[str]:
        return unsupported_parameters(request, vertex=is_vertex(google_base(channel)))

    async def generate(self, request: ImageRequest, channel: ChannelSpec, upstream_model: str) -> ImageResult:
        auth, secrets = await google_auth(channel, self.tokens, "x-goog-api-key")
        url = generate_content_url(google_base(channel), upstream_model)
        vertex = is_vertex(google_base(channel))
        # One image per call. The task group cancels every call still in flight if this request is
        # cancelled (client gone, routing deadline), so nothing keeps running for a dead request.
        async with asyncio.TaskGroup() as group:
            calls = [
                group.create_task(
                    self._call(url, build_body(request, vertex=vertex, index=index), auth, secrets, channel.timeout_s)
                )
                for index in range(request.n)
            ]
        return combine([call.result() for call in calls])

    async def _call(
        self, url: str, body: dict[str, Any], auth: RequestAuth, secrets: tuple[str, ...], timeout_s: float
    ) -> CallOutcome:
        budget = call_budget(timeout_s)
        try:
            async with asyncio.timeout(budget):
                answer = await post_json(
                    self.http, url, body=body, headers=auth.headers, params=auth.params or None, timeout_s=budget
                )
            return parse_response(answer)
        except TimeoutError:
            return UpstreamAmbiguous(f"the upstream did not answer within {budget:g} s")
        except UpstreamError as exc:
            return redact_error(exc, secrets)


def call_budget(timeout_s: float) -> float:
    """How long one call may take: a little under the channel's timeout, which routing enforces on
    the whole request. A straggler then fails on its own while there is still time to deliver (and
    bill) the images its siblings brought back, instead of routing discarding them all."""
    return timeout_s - min(2.0, timeout_s * 0.2)


def is_vertex(base_url: str) -> bool:
    """Vertex base URLs end in `/publishers/google` (with or without project and location)."""
    return urlsplit(base_url).path.rstrip("/").endswith("/publishers/google")


def generate_content_url(base_url: str, upstream_model: str) -> str:
    return f"{base_url.rstrip('/')}/models/{upstream_model}:generateContent"


def unsupported_parameters(request: ImageRequest, *, vertex: bool) -> list[str]:
    refused = set(request.extra)  # OpenAI's quality/background have no Gemini equivalent
    if request.negative_prompt is not None:
        refused.add("negative_prompt")
    if not vertex:
        if request.person_generation is not None:
            refused.add("person_generation")
        if request.output_format != "png":
            refused.add("output_format")
    return sorted(refused)


def build_body(request: ImageRequest, *, vertex: bool, index: int = 0) -> dict[str, Any]:
    """The `:generateContent` body for image `index` of `request`."""
    image_config: dict[str, Any] = {"aspectRatio": request.aspect_ratio, "imageSize": request.image_size}
    if vertex:
        image_config["imageOutputOptions"] = {"mimeType": MIME_TYPES[request.output_format]}
        if request.person_generation is not None:
            image_config["personGeneration"] = PERSON_GENERATION[request.person_generation]
    generation_config: dict[str, Any] = {"responseModalities": ["IMAGE"], "imageConfig": image_config}
    if request.seed is not None:
        generation_config["seed"] = call_seed(request.seed, index)
    return {
        "contents": [{"role": "user", "parts": [{"text": request.prompt}]}],
        "generationConfig": generation_config,
    }


def call_seed(seed: int, index: int) -> int:
    """The int32 seed for image `index`.

    Each call makes one image, so n calls with one seed would return n copies of the same image;
    offsetting by the index keeps the set reproducible yet distinct, as Imagen's seed does. The
    gateway's seeds are uint32 and the upstream field is int32, so the sum is read as a signed
    32-bit value: distinct seeds stay distinct.
    """
    value = (seed + index) % 2**32
    return value - 2**32 if value >= 2**31 else value


class _InlineData(msgspec.Struct):
    data: Raw = ABSENT  # its `mimeType` is not read: the type comes from the bytes


class _Part(msgspec.Struct):
    thought: Any = None
    text: Any = None
    inlineData: _InlineData | None = None
    inline_data: _InlineData | None = None


class _Content(msgspec.Struct):
    parts: list[_Part] | None = None


class _Candidate(msgspec.Struct):
    content: _Content | None = None
    finishReason: Any = None
    finishMessage: Any = None


class _Answer(msgspec.Struct):
    promptFeedback: Any = None
    candidates: list[_Candidate] | None = None


def parse_response(body: bytes | bytearray) -> GeneratedImage | Withheld:
    """One call's answer: its image, or why it was withheld. Raises UpstreamRetryable otherwise."""
    answer = decode_answer(body, _Answer, "a generateContent response")
    feedback = answer.promptFeedback
    if isinstance(feedback, dict) and isinstance(feedback.get("blockReason"), str):
        return Withheld(_reason(feedback["blockReason"], feedback.get("blockReasonMessage")))
    if not answer.candidates:
        raise _unexpected_shape()
    finished: list[_Candidate] = []
    for candidate in answer.candidates:
        image = _first_image(candidate.content)
        if image is not None:
            return image
        if isinstance(candidate.finishReason, str):
            finished.append(candidate)
    for candidate in finished:
        if candidate.finishReason in WITHHOLDING_FINISH_REASONS:
            return Withheld(_reason(candidate.finishReason, candidate.finishMessage))
    if finished:
        # NO_IMAGE, IMAGE_OTHER, MAX_TOKENS, a text-only STOP…: not a policy decision, so another
        # attempt (or channel) may well produce the image.
        reasons = ", ".join(sorted({str(c.finishReason) for c in finished}))
        raise UpstreamRetryable(f"the upstream answered without an image (finishReason {reasons})")
    raise _unexpected_shape()


def _first_image(content: _Content | None) -> GeneratedImage | None:
    """The candidate's first final image, with the candidate's text parts (a caption the model
    wrote beside it) attached for the formats that pass text through."""
    image: GeneratedImage | None = None
    texts: list[str] = []
    for part in (content.parts if content else None) or []:
        if part.thought is True:
            continue
        if isinstance(part.text, str) and part.text.strip():
            texts.append(part.text)
        # Google answers camelCase; relays that re-serialise the proto may keep snake_case.
        blob = part.inlineData or part.inline_data
        if blob is None or image is not None:
            continue
        data = base64_text(blob.data)
        if data is not None:
            # An image model's inline data is its image: anything else (a page, a script, text
            # labelled as an image or not) is an upstream fault, never delivered.
            image = checked_image(data, "the inlineData of the upstream's answer")
    if image is None or not texts:
        return image
    return dataclasses.replace(image, text="\n".join(texts))


def _reason(code: str, message: Any) -> str:
    text = f"{code}: {message.strip()}" if isinstance(message, str) and message.strip() else code
    return text[:REASON_CHARS]


def _unexpected_shape() -> UpstreamRetryable:
    return UpstreamRetryable(
        "the upstream answered 200 with a body that is not a generateContent response "
        "(no image, no candidates, no promptFeedback)",
        status=200,
    )


def combine(outcomes: list[CallOutcome]) -> ImageResult:
    """The request's result from its calls: whatever images arrived are delivered (and billed)."""
    images = [outcome for outcome in outcomes if isinstance(outcome, GeneratedImage)]
    withheld = [outcome.reason for outcome in outcomes if isinstance(outcome, Withheld)]
    errors = [outcome for outcome in outcomes if isinstance(outcome, UpstreamError)]
    if images:
        return ImageResult(images=images, filtered_reasons=withheld)
    if not errors:
        raise ContentFiltered(withheld)
    raise most_telling(errors)


def most_telling(errors: list[UpstreamError]) -> UpstreamError:
    for kind in ERROR_PRECEDENCE:
        for error in errors:
            if isinstance(error, kind):
                return error
    return errors[0]
