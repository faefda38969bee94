"""The `xai-images` provider: xAI's Grok Imagine models through `POST {base}/images/generations`.

Wire facts (docs/providers/xai.md has the sources):

- Bearer auth; the public base is https://api.x.ai/v1, used when the channel's `base_url` is empty.
- Body: `model`, `prompt`, `n` (1–10), `aspect_ratio` (a wider list than ours, every canonical
  ratio included; its default is not ours, so it is always sent), `resolution` (`1k`/`2k`),
  `response_format` (`url` unless asked: we ask `b64_json`), `quality` (low/medium/high: a price
  tier on `grok-imagine-image-2.0`, ignored by the other models, so refused for them rather than
  charged as if honoured). `size` and `style` are documented as not supported (the upstream
  answers `400 Argument not supported: size`); there is no seed, negative prompt, person
  generation, background or output format, so a request carrying one is refused before any hold.
- Answer: `data[].b64_json` (some deployments prefix it with `data:image/…;base64,`),
  `data[].mime_type`, `block_reason` when input moderation refused the prompt, and
  `usage.cost_in_usd_ticks` (10,000,000,000 ticks = 1 USD): what the call really cost.
- Errors come as `{"error": {"message", "type", "code"}}` or flat `{"code": "400", "error": "…"}`
  (both read by app/providers/upstream_http.py). 403 can mean the team ran out of credits (a
  channel problem: fail over, counted towards auto-disable), 529 is "overloaded" (retryable).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import msgspec

from app.images import Base64Text, GeneratedImage, ImageRequest, ImageResult
from app.providers.answer_json import Raw, base64_text, decode_answer
from app.providers.credentials import RequestAuth, channel_api_key, key_auth, redact_error
from app.providers.errors import (
    ContentFiltered,
    UpstreamAmbiguous,
    UpstreamError,
    UpstreamRejected,
    UpstreamRetryable,
)
from app.providers.image_check import checked_image
from app.providers.upstream_http import post_json, upstream_detail
from app.specs import ChannelSpec

DEFAULT_BASE_URL = "https://api.x.ai/v1"
MAX_N = 10  # per call; more images are asked for in several calls
RESOLUTIONS = {"1K": "1k", "2K": "2k"}
QUALITIES = frozenset({"low", "medium", "high"})
UNSUPPORTED_FIELDS = ("seed", "negative_prompt", "person_generation")
TICKS_PER_USD = Decimal(10_000_000_000)
CENT_FRACTION = Decimal("0.0001")  # upstream_cost is kept to 4 places (Fixed4)
DATA_URL_PREFIX_MAX = 100  # `"data:image/jpeg;base64,` is 24 bytes; a comma further in is not a prefix
# A 400 naming an argument the upstream does not take is this adapter's fault towards that
# upstream (a relay with a narrower API), not the caller's: another channel may well serve it.
ARGUMENT_REFUSED = "argument not supported"
MODERATION_PHRASES = ("content policy", "moderation", "safety")


def takes_quality(upstream_model: str) -> bool:
    """Only grok-imagine-image-2.0 prices by `quality`; the other models ignore it."""
    return upstream_model.lower().rsplit("/", 1)[-1].startswith("grok-imagine-image-2.0")


def unsupported_parameters(request: ImageRequest, upstream_model: str) -> list[str]:
    refused = [name for name in UNSUPPORTED_FIELDS if getattr(request, name) is not None]
    if request.output_format != "png":
        refused.append("output_format")  # no such field: the upstream picks the format (JPEG)
    quality = request.extra.get("quality")
    if quality is not None and not (takes_quality(upstream_model) and quality in QUALITIES):
        refused.append("quality")
    refused.extend(sorted(set(request.extra) - {"quality"}))
    return refused


def call_sizes(n: int) -> list[int]:
    """`n` images as the `n` of each call, at most MAX_N each."""
    return [min(MAX_N, n - start) for start in range(0, n, MAX_N)]


def build_body(request: ImageRequest, upstream_model: str, n: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": upstream_model,
        "prompt": request.prompt,
        "n": n,
        "aspect_ratio": request.aspect_ratio,
        "resolution": RESOLUTIONS[request.image_size],
        "response_format": "b64_json",
    }
    if "quality" in request.extra:
        body["quality"] = request.extra["quality"]
    return body


def generations_url(base_url: str) -> str:
    return f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}/images/generations"


class _Answer(msgspec.Struct):
    data: list[dict[str, Raw]] | None = None
    block_reason: Any = None
    usage: Any = None


@dataclass(frozen=True, slots=True)
class CallResult:
    """One call's images, or the reason input moderation blocked it, and its usage block."""

    images: list[GeneratedImage]
    blocked: str | None
    usage: dict[str, Any] | None


def parse_answer(body: bytes | bytearray, *, n: int) -> CallResult:
    answer = decode_answer(body, _Answer, "an xAI images response")
    usage = answer.usage if isinstance(answer.usage, dict) else None
    if isinstance(answer.block_reason, str) and answer.block_reason and not answer.data:
        return CallResult([], answer.block_reason[:300], usage)
    if not answer.data:
        raise UpstreamRetryable("the upstream answered 200 without images (no data[] in xAI's format)", status=200)
    images = [_image(item, index) for index, item in enumerate(answer.data[:n])]
    return CallResult(images, None, usage)


def _image(item: dict[str, Raw], index: int) -> GeneratedImage:
    b64 = base64_text(item.get("b64_json"))
    if b64 is None:
        raise UpstreamRetryable(f"data[{index}] of the upstream's answer holds no b64_json", status=200)
    return checked_image(without_data_url_prefix(b64), f"data[{index}].b64_json")


def without_data_url_prefix(b64: Base64Text) -> Base64Text:
    """`"data:image/jpeg;base64,AAAA"` as `"AAAA"` (one copy of the text, only when prefixed)."""
    token = b64.json
    if not token.startswith(b'"data:'):
        return b64
    comma = token.find(b",", 0, DATA_URL_PREFIX_MAX)
    if comma < 0 or b";base64" not in token[:comma]:
        return b64  # not base64 data: the image check refuses it
    return Base64Text(b'"' + token[comma + 1 :])


def cost_of(usages: list[dict[str, Any] | None]) -> Decimal | None:
    """The calls' `usage.cost_in_usd_ticks` in USD, rounded half-up to 4 places; None when no
    call reported it."""
    ticks = [u.get("cost_in_usd_ticks") for u in usages if u is not None]
    counted = [t for t in ticks if isinstance(t, int) and not isinstance(t, bool) and t >= 0]
    if not counted:
        return None
    return (Decimal(sum(counted)) / TICKS_PER_USD).quantize(CENT_FRACTION, rounding=ROUND_HALF_UP)


def merged_usage(usages: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """One call's usage block as it came; several calls' numbers summed key by key."""
    present = [u for u in usages if u is not None]
    if len(present) <= 1:
        return present[0] if present else None
    merged: dict[str, Any] = {}
    for usage in present:
        for key, amount in usage.items():
            if isinstance(amount, int) and not isinstance(amount, bool) and isinstance(merged.get(key, 0), int):
                merged[key] = merged.get(key, 0) + amount
            else:
                merged.setdefault(key, amount)
    return merged


def classify(exc: UpstreamError) -> UpstreamError:
    """xAI's meanings for statuses the shared classification reads generically."""
    if isinstance(exc, UpstreamRejected) and exc.status == 403:
        exc.message = (
            "the upstream refused the channel (403): the xAI team may have run out of credits or be "
            f"blocked; the operator must top up or fix the channel{_detail(exc)}"
        )
    elif isinstance(exc, UpstreamRetryable) and exc.status == 529:
        exc.message = f"the upstream is overloaded (529){_detail(exc)}"
    elif isinstance(exc, UpstreamRejected) and exc.status == 400:
        text = exc.message.lower()
        if ARGUMENT_REFUSED in text:
            return UpstreamRetryable(
                f"the upstream does not take an argument this adapter sent (400){_detail(exc)}",
                status=400,
                upstream_code=exc.upstream_code,
            )
        if any(phrase in text for phrase in MODERATION_PHRASES):
            # Refused before anything was made: nothing the provider bills.
            return ContentFiltered(
                [_detail(exc).removeprefix(": ") or "blocked by the upstream's moderation"], billed=False
            )
    exc.args = (exc.message,)
    return exc


def _detail(exc: UpstreamError) -> str:
    upstream_text = upstream_detail(exc)
    return f": {upstream_text}" if upstream_text else ""


class XAIImagesProvider:
    name = "xai-images"
    placeholder = False

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    def unsupported(self, request: ImageRequest, channel: ChannelSpec, upstream_model: str) -> list[str]:
        return unsupported_parameters(request, upstream_model)

    async def generate(self, request: ImageRequest, channel: ChannelSpec, upstream_model: str) -> ImageResult:
        refused = unsupported_parameters(request, upstream_model)
        if refused:
            raise UpstreamRejected(
                f"channel {channel.name} ({upstream_model}) cannot honour: {', '.join(refused)}", status=400
            )
        # Before the task group: a key that cannot be read (its environment variable unset) is one
        # typed UpstreamRejected here, where inside a task it would surface as an ExceptionGroup (a 500).
        auth = key_auth(channel, "bearer")
        secret = channel_api_key(channel)
        # The task group cancels the other calls if this request is cancelled (deadline, client gone).
        async with asyncio.TaskGroup() as group:
            calls = [
                group.create_task(self._call(channel, auth, secret, build_body(request, upstream_model, n), n))
                for n in call_sizes(request.n)
            ]
        return combine([call.result() for call in calls])

    async def _call(
        self, channel: ChannelSpec, auth: RequestAuth, secret: str | None, body: dict[str, Any], n: int
    ) -> CallResult | UpstreamError:
        try:
            answer = await post_json(
                self.http,
                generations_url(channel.base_url),
                body=body,
                headers=auth.headers,
                params=auth.params or None,
                timeout_s=channel.timeout_s,
            )
            return parse_answer(answer, n=n)
        except UpstreamError as exc:
            return classify(redact_error(exc, [secret]))


def combine(outcomes: list[CallResult | UpstreamError]) -> ImageResult:
    """The request's result from its calls: the images that arrived are delivered (and billed),
    and the cost and usage of every call that answered are kept."""
    answered = [outcome for outcome in outcomes if isinstance(outcome, CallResult)]
    errors = [o for o in outcomes if isinstance(o, UpstreamError) and not isinstance(o, ContentFiltered)]
    images = [image for call in answered for image in call.images]
    blocked = [call.blocked for call in answered if call.blocked is not None]
    blocked += [reason for o in outcomes if isinstance(o, ContentFiltered) for reason in o.reasons]
    if not images:
        if errors:
            raise most_telling(errors)
        # Billed only if some call answered (a 200 with a block_reason); 400 refusals made nothing.
        raise ContentFiltered(blocked, billed=bool(answered))
    usages = [call.usage for call in answered]
    return ImageResult(
        images=images, filtered_reasons=blocked, upstream_cost=cost_of(usages), usage=merged_usage(usages)
    )


# When every call failed, the strongest claim wins: a rejection (the operator or the caller must
# act), then ambiguous (a call may have been billed: no replay elsewhere), then retryable.
ERROR_PRECEDENCE: tuple[type[UpstreamError], ...] = (UpstreamRejected, UpstreamAmbiguous, UpstreamRetryable)


def most_telling(errors: list[UpstreamError]) -> UpstreamError:
    for kind in ERROR_PRECEDENCE:
        for error in errors:
            if isinstance(error, kind):
                return error
    return errors[0]
