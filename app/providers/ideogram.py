"""The `ideogram` provider: Ideogram 3.0, `POST {base_url}/v1/ideogram-v3/generate`.

Wire facts (https://developer.ideogram.ai/api-reference/api-reference/generate-v3, and the errors
page https://developer.ideogram.ai/ideogram-api/errors; docs/providers/ideogram.md has the rest):

- multipart/form-data, the key in an `Api-Key` header; the base URL defaults to
  `https://api.ideogram.ai` when the channel leaves it empty.
- Sizes: `aspect_ratio` is written with an x (`16x9`), or an exact `resolution` from Ideogram's own
  list (never both). The canonical request asks for DIMENSIONS[(image size, ratio)]: where that
  exact size is on Ideogram's list (1024x1024) it is sent as `resolution`, otherwise the ratio is,
  and Ideogram picks its own pixel size for it (16x9 is 1312x736). Its largest side is 1536 px, so
  2K cannot be honoured.
- `rendering_speed` (TURBO | DEFAULT | QUALITY) is not the caller's: it comes from the catalog
  model's options, so one upstream model is sold as several catalog models at several prices.
- `magic_prompt` (Ideogram rewriting the prompt) is always sent OFF: the gateway's request has no
  way to ask for prompt rewriting (Google's `enhancePrompt: true` is refused at the edge), and a
  rewritten prompt is not what the caller sent.
- The answer holds image URLs that expire: each is fetched at once through the guarded fetcher
  (app/providers/image_fetch.py: SSRF rules, no redirects, 50 MB, type from the bytes). An item
  with `is_image_safe: false` (its URL is then empty) was withheld by Ideogram's safety check:
  listed as filtered, never delivered, never charged to the caller. Ideogram bills the request
  anyway, so the attempt keeps the images the upstream returned.
- 422 is the prompt failing Ideogram's safety check (not billed upstream): a filtered request.
  402 (out of credits, a plan's daily limit) is the channel's account, not the request: another
  channel may serve it, so it is retryable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import httpx
import msgspec

from app.images import ASPECT_RATIOS, DIMENSIONS, PROVIDER_OPTIONS, GeneratedImage, ImageRequest, ImageResult
from app.net.guarded_fetch import GuardedFetcher
from app.providers.answer_json import Raw, decode_answer, value
from app.providers.credentials import channel_api_key, redact_error
from app.providers.errors import ContentFiltered, UpstreamError, UpstreamRetryable
from app.providers.image_fetch import fetch_image
from app.providers.upstream_http import post_form, upstream_detail
from app.specs import ChannelSpec

DEFAULT_BASE_URL = "https://api.ideogram.ai"
GENERATE_PATH = "/v1/ideogram-v3/generate"
MAX_IMAGES = 8  # num_images 1..8
MAX_SEED = 2_147_483_647
FETCH_TIMEOUT_S = 60.0  # per image URL; the channel's own timeout still bounds the whole call
RENDERING_SPEEDS = PROVIDER_OPTIONS["rendering_speed"]
UNSAFE = "withheld by Ideogram's safety check (is_image_safe: false)"
PROMPT_REFUSED = "the prompt failed Ideogram's safety check"

# Ideogram writes ratios with an x; it has more of them than the gateway, every one of ours included.
WIRE_RATIOS: Mapping[str, str] = {ratio: ratio.replace(":", "x") for ratio in ASPECT_RATIOS}
# Ideogram 3.0's `resolution` values, as its reference lists them (kept as one text to compare with it).
RESOLUTIONS = frozenset(
    """512x1536 576x1408 576x1472 576x1536 640x1344 640x1408 640x1472 640x1536 704x1152 704x1216
    704x1280 704x1344 704x1408 704x1472 736x1312 768x1088 768x1216 768x1280 768x1344 800x1280 832x960
    832x1024 832x1088 832x1152 832x1216 832x1248 864x1152 896x960 896x1024 896x1088 896x1120 896x1152
    960x832 960x896 960x1024 960x1088 1024x832 1024x896 1024x960 1024x1024 1088x768 1088x832 1088x896
    1088x960 1120x896 1152x704 1152x832 1152x864 1152x896 1216x704 1216x768 1216x832 1248x832 1280x704
    1280x768 1280x800 1312x736 1344x640 1344x704 1344x768 1408x576 1408x640 1408x704 1472x576 1472x640
    1472x704 1536x512 1536x576 1536x640""".split()  # noqa: SIM905
)
LARGEST_SIDE = 1536


def unsupported_parameters(request: ImageRequest) -> list[str]:
    """What Ideogram 3.0 cannot honour, named as the caller (or, for rendering_speed, the catalog)
    spells it."""
    refused = sorted(request.extra)  # OpenAI's quality/background have no Ideogram equivalent
    if request.person_generation is not None:
        refused.append("person_generation")
    if request.seed is not None and request.seed > MAX_SEED:
        refused.append("seed")
    if request.aspect_ratio not in WIRE_RATIOS:
        refused.append("aspect_ratio")
    elif max(request.dimensions) > LARGEST_SIDE:
        refused.append("image_size")  # 2K: Ideogram's sizes stop at 1536 px
    if request.output_format != "png":
        refused.append("output_format")  # Ideogram answers PNG and has no format setting
    if request.n > MAX_IMAGES:
        refused.append("n")
    speed = request.options.get("rendering_speed")
    if speed is not None and speed not in RENDERING_SPEEDS:
        refused.append("rendering_speed")
    return refused


def wire_size(request: ImageRequest) -> tuple[str, str]:
    """The size field to send: the exact `resolution` where Ideogram has the canonical size, else
    the `aspect_ratio` (Ideogram's own size for it)."""
    width, height = DIMENSIONS[(request.image_size, request.aspect_ratio)]
    exact = f"{width}x{height}"
    if exact in RESOLUTIONS:
        return "resolution", exact
    return "aspect_ratio", WIRE_RATIOS[request.aspect_ratio]


def form_fields(request: ImageRequest) -> list[tuple[str, str]]:
    """The multipart fields of a generate call; only for a request nothing was refused in."""
    fields = [("prompt", request.prompt)]
    if request.negative_prompt is not None:
        fields.append(("negative_prompt", request.negative_prompt))
    if request.seed is not None:
        fields.append(("seed", str(request.seed)))
    fields.append(wire_size(request))
    fields.append(("num_images", str(request.n)))
    speed = request.options.get("rendering_speed")
    if speed is not None:
        fields.append(("rendering_speed", speed))
    fields.append(("magic_prompt", "OFF"))
    return fields


def generate_url(base_url: str) -> str:
    return f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}{GENERATE_PATH}"


class _Answer(msgspec.Struct):
    data: list[dict[str, Raw]] | None = None


def parse_answer(answer: bytes | bytearray, *, n: int) -> tuple[list[str | None], list[str]]:
    """`{"created", "data": [{"url", "is_image_safe", …}]}` as the URLs to fetch (None where an
    image was withheld) and the reasons for those withheld; at most `n` items (no more was held)."""
    data = decode_answer(answer, _Answer, "an Ideogram generate response").data
    if not data:
        raise UpstreamRetryable("the upstream answered 200 without images (no data[] in Ideogram's format)", status=200)
    urls: list[str | None] = []
    withheld: list[str] = []
    for item in data[:n]:
        url = value(item.get("url"))
        if value(item.get("is_image_safe")) is False or not (isinstance(url, str) and url):
            urls.append(None)
            withheld.append(UNSAFE)
        else:
            urls.append(url)
    return urls, withheld


def prompt_refusal(exc: UpstreamError) -> ContentFiltered | None:
    """Ideogram's 422: the prompt failed its safety check. Nothing was generated or billed."""
    if exc.status != 422:
        return None
    upstream_text = upstream_detail(exc)
    return ContentFiltered([upstream_text or PROMPT_REFUSED], billed=False)


def out_of_credit(exc: UpstreamError) -> UpstreamRetryable | None:
    """Ideogram's 402 (no balance left, or a plan's limit): the channel's account cannot pay now,
    another channel (or this one after a top-up) can serve the request."""
    if exc.status != 402:
        return None
    upstream_text = upstream_detail(exc)
    detail = f": {upstream_text}" if upstream_text else ""
    return UpstreamRetryable(
        f"the upstream account cannot pay for this request (402); the operator must add credit{detail}",
        status=402,
        upstream_code=exc.upstream_code,
    )


class IdeogramProvider:
    name = "ideogram"
    placeholder = False

    def __init__(self, http: httpx.AsyncClient, fetcher: GuardedFetcher) -> None:
        self.http = http
        # Image URLs go through the guarded fetcher, never `http` (the API's client, with its key).
        self.fetcher = fetcher

    def unsupported(self, request: ImageRequest, channel: ChannelSpec, upstream_model: str) -> list[str]:
        return unsupported_parameters(request)

    async def generate(self, request: ImageRequest, channel: ChannelSpec, upstream_model: str) -> ImageResult:
        secret = channel_api_key(channel)
        try:
            answer = await post_form(
                self.http,
                generate_url(channel.base_url),
                fields=form_fields(request),
                headers={"api-key": secret} if secret else {},
                timeout_s=channel.timeout_s,
            )
        except UpstreamError as exc:
            redact_error(exc, [secret])
            raise prompt_refusal(exc) or out_of_credit(exc) or exc from None
        urls, withheld = parse_answer(answer, n=request.n)
        if not any(urls):
            raise ContentFiltered(withheld)
        images = await self._fetch_all(urls, min(channel.timeout_s, FETCH_TIMEOUT_S))
        return ImageResult(images=images, filtered_reasons=withheld)

    async def _fetch_all(self, urls: list[str | None], timeout_s: float) -> list[GeneratedImage]:
        """Every safe image, or the first failure (UpstreamAmbiguous: Ideogram has billed them): a
        partial set would be charged as a success with no word of what went missing."""
        fetches = [
            fetch_image(
                self.fetcher, url, where=f"image {index + 1} from the URL Ideogram returned", timeout_s=timeout_s
            )
            for index, url in enumerate(urls)
            if url is not None
        ]
        results = await asyncio.gather(*fetches, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [result for result in results if isinstance(result, GeneratedImage)]
