"""The `openai-images` provider: any OpenAI-compatible `POST {base_url}/images/generations`.

What an upstream model accepts depends on its family, told apart by the upstream model's name:

- GPT Image models with free sizes (`gpt-image-2`, its snapshots, `gpt-image-2.5-*`) accept any
  `WxH` with both sides divisible by 16 and a ratio within 1:3–3:1, up to 3840x2160; every size of
  the gateway's canonical table qualifies, so they are asked for it exactly, 2K included.
  `gpt-image-2` and its snapshot cannot draw a transparent background (OpenAI answers 400);
  the `gpt-image-2.5` models add the qualities `xhigh` and `max`.
- Other GPT Image models (`gpt-image-1`, `-1-mini`, `-1.5`), and names we do not recognise
  (relays), have three sizes: 1024x1024, 1536x1024 and 1024x1536. 1:1 maps exactly; any other
  ratio gets the size of the same orientation, so the delivered pixel size is the upstream's, not
  the canonical table's. 2K is refused before any credits are held.
- DALL·E models (retired by OpenAI in May 2026; some relays still serve them) have their own
  sizes, only PNG, no `background`, and DALL·E 3 only `n=1`.

GPT Image models always answer base64 and reject `response_format`; DALL·E answers URLs unless
asked, so only DALL·E is sent `response_format: "b64_json"`. Base64 text is passed through
untouched once checked to be an image (app/providers/image_check.py). An item that still carries
a `url` is fetched by the guarded fetcher (app/providers/image_fetch.py): SSRF rules, no
credentials, no redirects, capped in size, and it must be an image.

A GPT Image answer carries a `usage` block (token counts, which is what OpenAI bills); it is kept
as the attempt's usage (ImageResult.usage). Errors are classified once in
app/providers/upstream_http.py; two OpenAI answers are told apart here: a 400 whose code is
`moderation_blocked` (the safety system refused; nothing charged, no failover) and a 429
`insufficient_quota` (the channel's OpenAI account is out of credit: not a rate limit to wait out,
so the request fails over and the channel counts as failing). Wire facts and sources:
docs/providers/openai.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from app.images import DEFAULT_IMAGE_SIZE, DIMENSIONS, GeneratedImage, ImageRequest, ImageResult
from app.net.guarded_fetch import GuardedFetcher
from app.providers.answer_json import ABSENT, Raw, base64_text, decode_answer, value
from app.providers.credentials import channel_api_key, key_auth, redact_error
from app.providers.errors import ContentFiltered, UpstreamError, UpstreamRejected, UpstreamRetryable
from app.providers.image_check import checked_image
from app.providers.image_fetch import fetch_image
from app.providers.upstream_http import post_json, upstream_detail
from app.specs import ChannelSpec

DEFAULT_BASE_URL = "https://api.openai.com/v1"
UNSUPPORTED_FIELDS = ("seed", "negative_prompt", "person_generation")  # OpenAI's API has no such fields
BACKGROUNDS = frozenset({"auto", "transparent", "opaque"})
# OpenAI's codes for a moderation refusal: `moderation_blocked` (GPT Image) and
# `content_policy_violation` (DALL·E, Azure). Relays that drop the code keep OpenAI's wording.
MODERATION_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
MODERATION_PHRASES = ("safety system", "content filter")

Size = tuple[str, str]  # (image size, aspect ratio), the canonical request's keys into DIMENSIONS


@dataclass(frozen=True, slots=True)
class Family:
    """What one kind of upstream model accepts."""

    name: str
    sizes: Mapping[Size, str]  # canonical size -> OpenAI `size`; absent = cannot be honoured
    qualities: frozenset[str]
    legacy: bool = False  # DALL·E: `response_format` is sent; `output_format`, `background` do not exist
    max_n: int = 10
    transparent: bool = True  # `background: "transparent"` is accepted


def _by_orientation(square: str, landscape: str | None, portrait: str | None) -> dict[Size, str]:
    sizes: dict[Size, str] = {}
    for (tier, ratio), (width, height) in DIMENSIONS.items():
        size = square if width == height else landscape if width > height else portrait
        if tier == DEFAULT_IMAGE_SIZE and size is not None:
            sizes[(tier, ratio)] = size
    return sizes


GPT_QUALITIES = frozenset({"auto", "low", "medium", "high"})
EXACT_SIZES: dict[Size, str] = {key: f"{w}x{h}" for key, (w, h) in DIMENSIONS.items()}
GPT_IMAGE_2 = Family("gpt-image-2", EXACT_SIZES, GPT_QUALITIES, transparent=False)
GPT_IMAGE_2_5 = Family("gpt-image-2.5", EXACT_SIZES, GPT_QUALITIES | {"xhigh", "max"})
STANDARD = Family("gpt-image", _by_orientation("1024x1024", "1536x1024", "1024x1536"), GPT_QUALITIES)
DALL_E_3 = Family(
    "dall-e-3",
    _by_orientation("1024x1024", "1792x1024", "1024x1792"),
    frozenset({"auto", "standard", "hd"}),
    legacy=True,
    max_n=1,
)
DALL_E_2 = Family("dall-e-2", _by_orientation("1024x1024", None, None), frozenset({"auto", "standard"}), legacy=True)


def family_of(upstream_model: str) -> Family:
    name = upstream_model.lower().rsplit("/", 1)[-1]  # relays often write "openai/gpt-image-2"
    if name.startswith("dall-e-2"):
        return DALL_E_2
    if name.startswith("dall-e"):
        return DALL_E_3
    if name.startswith("gpt-image-2.5"):
        return GPT_IMAGE_2_5
    if name == "gpt-image-2" or name.startswith("gpt-image-2-"):
        return GPT_IMAGE_2
    return STANDARD


def refused_parameters(request: ImageRequest, family: Family) -> list[str]:
    """The request's parameters this family cannot honour (named as the caller sent them)."""
    refused = [name for name in UNSUPPORTED_FIELDS if getattr(request, name) is not None]
    if (request.image_size, request.aspect_ratio) not in family.sizes:
        refused.append("image_size" if request.image_size != DEFAULT_IMAGE_SIZE else "aspect_ratio")
    quality = request.extra.get("quality")
    if quality is not None and not (isinstance(quality, str) and quality in family.qualities):
        refused.append("quality")
    background = request.extra.get("background")
    if background is not None and (
        family.legacy
        or not (isinstance(background, str) and background in BACKGROUNDS)
        # OpenAI: a transparent background needs PNG or WebP output.
        or (background == "transparent" and (request.output_format == "jpeg" or not family.transparent))
    ):
        refused.append("background")
    if family.legacy and request.output_format != "png":
        refused.append("output_format")
    if request.n > family.max_n:
        refused.append("n")
    refused.extend(sorted(set(request.extra) - {"quality", "background"}))
    return refused


def build_body(request: ImageRequest, upstream_model: str, family: Family) -> dict[str, Any]:
    """The JSON body for `POST /images/generations`; call only when nothing was refused."""
    body: dict[str, Any] = {
        "model": upstream_model,
        "prompt": request.prompt,
        "n": request.n,
        "size": family.sizes[(request.image_size, request.aspect_ratio)],
    }
    if family.legacy:
        body["response_format"] = "b64_json"
    else:
        body["output_format"] = request.output_format
    for name in ("quality", "background"):
        if name in request.extra:
            body[name] = request.extra[name]
    return body


def generations_url(base_url: str) -> str:
    """`POST {base_url}/images/generations`; an empty `base_url` means OpenAI's own API."""
    return f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}/images/generations"


@dataclass(frozen=True, slots=True)
class ImageAtUrl:
    """An answer item that points at the image instead of carrying it."""

    url: str
    index: int


class _Answer(msgspec.Struct):
    data: list[dict[str, Raw]] | None = None
    usage: Raw = ABSENT  # GPT Image only; kept apart so that a relay's odd usage never fails the images


# The fields of OpenAI's `usage` block (ImagesResponse.usage) that are kept on the attempt.
USAGE_COUNTS = ("input_tokens", "output_tokens", "total_tokens")
USAGE_DETAILS = ("input_tokens_details", "output_tokens_details")


@dataclass(frozen=True, slots=True)
class Answer:
    items: list[GeneratedImage | ImageAtUrl]
    usage: dict[str, Any] | None


def parse_answer(answer: bytes | bytearray, *, n: int) -> Answer:
    """`{"created", "data": [{"b64_json"} | {"url"}], "usage"?}`: the images (at most `n`: no
    more was held) and the usage block."""
    decoded = decode_answer(answer, _Answer, "an OpenAI images response")
    if not decoded.data:
        raise UpstreamRetryable("the upstream answered 200 without images (no data[] in the OpenAI format)", status=200)
    items = [_parse_item(item, index) for index, item in enumerate(decoded.data[:n])]
    return Answer(items, usage_of(decoded.usage))


def parse_images(answer: bytes | bytearray, *, n: int) -> list[GeneratedImage | ImageAtUrl]:
    return parse_answer(answer, n=n).items


def usage_of(raw: Raw) -> dict[str, Any] | None:
    """OpenAI's token counts, or None. Only whole non-negative numbers of the documented fields
    are kept: the block is stored with the attempt, and a relay could put anything in it."""
    try:
        block = value(raw)
    except msgspec.DecodeError:
        return None
    if not isinstance(block, dict):
        return None
    usage: dict[str, Any] = {name: block[name] for name in USAGE_COUNTS if _count(block.get(name))}
    for name in USAGE_DETAILS:
        details = block.get(name)
        if isinstance(details, dict):
            kept = {str(key)[:40]: count for key, count in list(details.items())[:8] if _count(count)}
            if kept:
                usage[name] = kept
    return usage or None


def _count(number: object) -> bool:
    return isinstance(number, int) and not isinstance(number, bool) and 0 <= number < 2**53


def _parse_item(item: dict[str, Raw], index: int) -> GeneratedImage | ImageAtUrl:
    b64 = base64_text(item.get("b64_json"))
    if b64 is not None:
        return checked_image(b64, f"data[{index}].b64_json")
    url = value(item.get("url"))
    if isinstance(url, str) and url:
        return ImageAtUrl(url, index)
    raise UpstreamRetryable(f"data[{index}] of the upstream's answer holds neither b64_json nor url", status=200)


def out_of_quota(exc: UpstreamRetryable) -> UpstreamRetryable | None:
    """OpenAI's 429 `insufficient_quota`: the channel's account has run out of credit or hit its
    monthly spend limit. Waiting does not help, so it is not reported as a rate limit (which would
    cool the channel and tell the caller to retry later): the request fails over, the channel
    counts as failing, and the attempt keeps the code for the operator. The HTTP status is left
    out on purpose: routing reads 429 as "rate limited"; the message keeps it."""
    if exc.status != 429 or exc.upstream_code != "insufficient_quota":
        return None
    upstream_text = upstream_detail(exc)
    return UpstreamRetryable(
        "the channel's upstream account is out of quota (HTTP 429 insufficient_quota); "
        f"the operator must add credit or raise its limit: {upstream_text or 'no detail'}",
        upstream_code="insufficient_quota",
    )


def moderation_block(exc: UpstreamRejected) -> ContentFiltered | None:
    """An upstream 400 that is OpenAI's safety system refusing the prompt or the images: nothing
    was generated for us, so nothing is charged and the caller hears `moderation_blocked`."""
    if exc.status != 400:
        return None
    by_code = exc.upstream_code in MODERATION_CODES
    if not by_code and not any(phrase in exc.message.lower() for phrase in MODERATION_PHRASES):
        return None
    upstream_text = upstream_detail(exc)
    return ContentFiltered([upstream_text or "blocked by the upstream's safety system"])


class OpenAIImagesProvider:
    name = "openai-images"
    placeholder = False

    def __init__(self, http: httpx.AsyncClient, fetcher: GuardedFetcher) -> None:
        self.http = http
        # Image URLs go through the guarded fetcher, never through `http`: that client is for the
        # channel's own API and may carry proxies and defaults meant for it.
        self.fetcher = fetcher

    def unsupported(self, request: ImageRequest, channel: ChannelSpec, upstream_model: str) -> list[str]:
        return refused_parameters(request, family_of(upstream_model))

    async def generate(self, request: ImageRequest, channel: ChannelSpec, upstream_model: str) -> ImageResult:
        family = family_of(upstream_model)
        refused = refused_parameters(request, family)
        if refused:
            raise UpstreamRejected(
                f"channel {channel.name} ({upstream_model}) cannot honour: {', '.join(refused)}", status=400
            )
        auth = key_auth(channel, "bearer")
        secret = channel_api_key(channel)
        try:
            answer = await post_json(
                self.http,
                generations_url(channel.base_url),
                body=build_body(request, upstream_model, family),
                headers=auth.headers,
                params=auth.params or None,
                timeout_s=channel.timeout_s,
            )
        except UpstreamError as exc:
            redact_error(exc, [secret])
            classified: UpstreamError | None = None
            if isinstance(exc, UpstreamRejected):
                classified = moderation_block(exc)
            elif isinstance(exc, UpstreamRetryable):
                classified = out_of_quota(exc)
            if classified is not None:
                raise classified from None
            raise
        parsed = parse_answer(answer, n=request.n)
        return ImageResult(images=await self._deliver(parsed.items, channel.timeout_s), usage=parsed.usage)

    async def _deliver(self, items: list[GeneratedImage | ImageAtUrl], timeout_s: float) -> list[GeneratedImage]:
        """Every image, or the first fetch failure: a partial set would be charged as a success with
        no word of what went missing, so one failed fetch fails the request (nothing charged)."""
        if not any(isinstance(item, ImageAtUrl) for item in items):
            return [item for item in items if isinstance(item, GeneratedImage)]
        results = await asyncio.gather(*(self._materialise(item, timeout_s) for item in items), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [result for result in results if isinstance(result, GeneratedImage)]

    async def _materialise(self, item: GeneratedImage | ImageAtUrl, timeout_s: float) -> GeneratedImage:
        if isinstance(item, GeneratedImage):
            return item
        where = f"image {item.index + 1} from the URL the upstream returned"
        return await fetch_image(self.fetcher, item.url, where=where, timeout_s=timeout_s)
