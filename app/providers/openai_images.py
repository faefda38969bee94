"""The `openai-images` provider: any OpenAI-compatible `POST {base_url}/images/generations`.

What an upstream model accepts depends on its family, told apart by the upstream model's name:

- GPT Image models with free sizes (`gpt-image-2`, its snapshots, `gpt-image-2.5-*`) accept any
  `WxH` with both sides divisible by 16 and a ratio within 1:3–3:1, up to 3840x2160; every size of
  the gateway's canonical table qualifies, so they are asked for it exactly, 2K included.
- Other GPT Image models, and names we do not recognise (relays), have three sizes: 1024x1024,
  1536x1024 and 1024x1536. 1:1 maps exactly; any other ratio gets the size of the same
  orientation, so the delivered pixel size is the upstream's, not the canonical table's. 2K is
  refused before any credits are held.
- DALL·E models (retired by OpenAI in May 2026; some relays still serve them) have their own
  sizes, only PNG, no `background`, and DALL·E 3 only `n=1`.

GPT Image models always answer base64 and reject `response_format`; DALL·E answers URLs unless
asked, so only DALL·E is sent `response_format: "b64_json"`. Base64 text is passed through
untouched. An item that still carries a `url` is fetched without credentials or redirects, capped
in size, and must be an image.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from app.catalog.snapshot import ChannelSpec
from app.generation.types import DIMENSIONS, MIME_TYPES, Base64Text, GeneratedImage, ImageRequest, ImageResult
from app.providers.answer_json import Raw, base64_text, decode_answer, value
from app.providers.credentials import channel_api_key, key_auth, redact_error
from app.providers.errors import ContentFiltered, UpstreamAmbiguous, UpstreamError, UpstreamRejected, UpstreamRetryable
from app.providers.upstream_http import post_json

MAX_IMAGE_BYTES = 50 * 1024 * 1024  # a 4K PNG is ~25 MB; anything larger is not an image we asked for
UNSUPPORTED_FIELDS = ("seed", "negative_prompt", "person_generation")  # OpenAI's API has no such fields
BACKGROUNDS = frozenset({"auto", "transparent", "opaque"})
# OpenAI's codes for a moderation refusal: `moderation_blocked` (GPT Image) and
# `content_policy_violation` (DALL·E, Azure). Relays that drop the code keep OpenAI's wording.
MODERATION_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
MODERATION_PHRASES = ("safety system", "content filter")
IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

Size = tuple[str, str]  # (image size, aspect ratio), the canonical request's keys into DIMENSIONS


@dataclass(frozen=True, slots=True)
class Family:
    """What one kind of upstream model accepts."""

    name: str
    sizes: Mapping[Size, str]  # canonical size -> OpenAI `size`; absent = cannot be honoured
    qualities: frozenset[str]
    legacy: bool = False  # DALL·E: `response_format` is sent; `output_format`, `background` do not exist
    max_n: int = 10


def _by_orientation(square: str, landscape: str | None, portrait: str | None) -> dict[Size, str]:
    sizes: dict[Size, str] = {}
    for (tier, ratio), (width, height) in DIMENSIONS.items():
        size = square if width == height else landscape if width > height else portrait
        if tier == "1K" and size is not None:
            sizes[(tier, ratio)] = size
    return sizes


GPT_QUALITIES = frozenset({"auto", "low", "medium", "high", "xhigh", "max"})
FREE_SIZE = Family("gpt-image (free sizes)", {key: f"{w}x{h}" for key, (w, h) in DIMENSIONS.items()}, GPT_QUALITIES)
STANDARD = Family("gpt-image", _by_orientation("1024x1024", "1536x1024", "1024x1536"), GPT_QUALITIES)
DALL_E_3 = Family(
    "dall-e-3",
    _by_orientation("1024x1024", "1792x1024", "1024x1792"),
    frozenset({"auto", "standard", "hd"}),
    legacy=True,
    max_n=1,
)
DALL_E_2 = Family("dall-e-2", _by_orientation("1024x1024", None, None), frozenset({"auto", "standard"}), legacy=True)
FREE_SIZE_PREFIXES = ("gpt-image-2-", "gpt-image-2.5-")


def family_of(upstream_model: str) -> Family:
    name = upstream_model.lower().rsplit("/", 1)[-1]  # relays often write "openai/gpt-image-2"
    if name.startswith("dall-e-2"):
        return DALL_E_2
    if name.startswith("dall-e"):
        return DALL_E_3
    if name == "gpt-image-2" or name.startswith(FREE_SIZE_PREFIXES):
        return FREE_SIZE
    return STANDARD


def refused_parameters(request: ImageRequest, family: Family) -> list[str]:
    """The request's parameters this family cannot honour (named as the caller sent them)."""
    refused = [name for name in UNSUPPORTED_FIELDS if getattr(request, name) is not None]
    if (request.image_size, request.aspect_ratio) not in family.sizes:
        refused.append("image_size" if request.image_size != "1K" else "aspect_ratio")
    quality = request.extra.get("quality")
    if quality is not None and not (isinstance(quality, str) and quality in family.qualities):
        refused.append("quality")
    background = request.extra.get("background")
    if background is not None and (
        family.legacy
        or not (isinstance(background, str) and background in BACKGROUNDS)
        # OpenAI: a transparent background needs PNG or WebP output.
        or (background == "transparent" and request.output_format == "jpeg")
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
    return f"{base_url.rstrip('/')}/images/generations"


@dataclass(frozen=True, slots=True)
class ImageAtUrl:
    """An answer item that points at the image instead of carrying it."""

    url: str
    index: int


class _Answer(msgspec.Struct):
    data: list[dict[str, Raw]] | None = None


def parse_images(answer: bytes | bytearray, *, n: int, default_mime: str) -> list[GeneratedImage | ImageAtUrl]:
    """`{"created", "data": [{"b64_json"} | {"url"}]}` into images (at most `n`: no more was held)."""
    data = decode_answer(answer, _Answer, "an OpenAI images response").data
    if not data:
        raise UpstreamRetryable("the upstream answered 200 without images (no data[] in the OpenAI format)", status=200)
    return [_parse_item(item, index, default_mime) for index, item in enumerate(data[:n])]


def _parse_item(item: dict[str, Raw], index: int, default_mime: str) -> GeneratedImage | ImageAtUrl:
    b64 = base64_text(item.get("b64_json"))
    if b64 is not None:
        try:
            head = base64.b64decode(b64.head(16), validate=True)  # the signature only: never the whole image
        except binascii.Error:
            raise UpstreamRetryable(
                f"data[{index}].b64_json of the upstream's answer is not base64", status=200
            ) from None
        return GeneratedImage(b64=b64, mime_type=sniff_mime(head) or default_mime)
    url = value(item.get("url"))
    if isinstance(url, str) and url:
        return ImageAtUrl(url, index)
    raise UpstreamRetryable(f"data[{index}] of the upstream's answer holds neither b64_json nor url", status=200)


def sniff_mime(head: bytes) -> str | None:
    """The image type from its first bytes: what was delivered, whatever was asked for."""
    for signature, mime in IMAGE_SIGNATURES:
        if head.startswith(signature):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


async def fetch_image(http: httpx.AsyncClient, item: ImageAtUrl, *, timeout_s: float, max_bytes: int) -> GeneratedImage:
    """Download an image the upstream has already generated, and billed us for.

    A failure here is UpstreamAmbiguous, not retryable: another channel would be paid a second
    time for the same images, so routing must not fail over blindly. The URL is never quoted in
    errors (it is often pre-signed) and the channel's credentials are never sent to it. Only
    image bytes are accepted, so a hostile upstream cannot make the gateway relay other content
    from wherever its URL points.
    """
    where = f"image {item.index + 1} from the URL the upstream returned"
    if urlsplit(item.url).scheme not in ("http", "https"):
        raise UpstreamAmbiguous(f"cannot fetch {where}: not an http(s) URL")
    timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
    try:
        async with http.stream("GET", item.url, timeout=timeout, follow_redirects=False) as response:
            if response.status_code != 200:
                raise UpstreamAmbiguous(f"fetching {where} failed (HTTP {response.status_code})")
            content = await _read_image(response, max_bytes, where)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise UpstreamAmbiguous(f"fetching {where} failed ({type(exc).__name__})") from None
    mime = sniff_mime(content[:12])
    if mime is None:
        raise UpstreamAmbiguous(f"{where} is not a PNG, JPEG, WebP or GIF image")
    return GeneratedImage(b64=Base64Text.of(base64.b64encode(content).decode("ascii")), mime_type=mime)


async def _read_image(response: httpx.Response, max_bytes: int, where: str) -> bytes:
    declared = response.headers.get("content-length", "")
    too_large = UpstreamAmbiguous(f"{where} is larger than {max_bytes} bytes")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():  # decoded bytes: the cap also stops compression bombs
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def moderation_block(exc: UpstreamRejected) -> ContentFiltered | None:
    """An upstream 400 that is OpenAI's safety system refusing the prompt or the images: nothing
    was generated for us, so nothing is charged and the caller hears `moderation_blocked`."""
    if exc.status != 400:
        return None
    by_code = exc.upstream_code in MODERATION_CODES
    if not by_code and not any(phrase in exc.message.lower() for phrase in MODERATION_PHRASES):
        return None
    _, _, upstream_text = exc.message.partition("): ")
    return ContentFiltered([upstream_text or "blocked by the upstream's safety system"])


class OpenAIImagesProvider:
    name = "openai-images"

    def __init__(self, http: httpx.AsyncClient, *, max_image_bytes: int = MAX_IMAGE_BYTES) -> None:
        self.http = http
        self.max_image_bytes = max_image_bytes

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
            blocked = moderation_block(exc) if isinstance(exc, UpstreamRejected) else None
            if blocked is not None:
                raise blocked from None
            raise
        items = parse_images(answer, n=request.n, default_mime=MIME_TYPES[request.output_format])
        return ImageResult(images=await self._deliver(items, channel.timeout_s))

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
        return await fetch_image(self.http, item, timeout_s=timeout_s, max_bytes=self.max_image_bytes)
