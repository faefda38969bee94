"""The `openai-images` adapter: pure translation against OpenAI's documented wire format, then the
real gateway in front of a fake OpenAI-compatible upstream (on SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import httpx2
import orjson
import pytest
from openai import AsyncOpenAI
from PIL import Image

from app.images import AspectRatio, Base64Text, GeneratedImage, ImageRequest, ImageSize
from app.net.guarded_fetch import MAX_FETCH_BYTES, GuardedFetcher
from app.providers.errors import ContentFiltered, UpstreamAmbiguous, UpstreamRejected, UpstreamRetryable
from app.providers.image_fetch import fetch_image
from app.providers.openai_images import (
    ImageAtUrl,
    OpenAIImagesProvider,
    build_body,
    family_of,
    generations_url,
    moderation_block,
    parse_answer,
    parse_images,
    refused_parameters,
)
from app.settings import Settings
from app.specs import ChannelSpec
from tests.support.fakes.dns import FakeResolver
from tests.support.fakes.openai_images import BLOCKED_WORD, USAGE, OpenAIImagesFake, invalid_value
from tests.support.fakes.upstream import FakeUpstream, Received, Reply, tiny_png_b64
from tests.support.harness import Harness, running_app
from tests.support.images import decode_image
from tests.support.sentinel import watching

GENERATIONS = "/v1/images/generations"
API_KEY = "sk-test-canary-9f8e7d6c5b4a39281706"
MODEL = "gpt-image-1.5-official"
KEY_FRAGMENT = API_KEY[:12]  # even a cut-off key must not leak


def jpeg_b64() -> str:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 120, 200)).save(out, format="JPEG")
    return base64.b64encode(out.getvalue()).decode()


def openai_answer(*b64s: str) -> dict[str, Any]:
    """The shape OpenAI documents for a GPT Image answer."""
    return {
        "created": 1763600000,
        "background": "opaque",
        "output_format": "png",
        "quality": "high",
        "size": "1024x1024",
        "data": [{"b64_json": b64} for b64 in b64s],
        "usage": {"input_tokens": 12, "output_tokens": 4160, "total_tokens": 4172},
    }


# OpenAI's refusal of a GPT Image prompt (HTTP 400), as the API returns it.
MODERATION_BLOCKED = {
    "error": {
        "message": "Your request was rejected by the safety system. If you believe this is an error, contact us "
        "at help.openai.com and include the request ID 0e6f3c1a. safety_violations=[violence].",
        "type": "image_generation_user_error",
        "param": None,
        "code": "moderation_blocked",
    }
}


# --- pure translation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream_model", "image_size", "aspect_ratio", "size"),
    [
        ("gpt-image-1.5", "1K", "1:1", "1024x1024"),
        ("gpt-image-1.5", "1K", "16:9", "1536x1024"),
        ("gpt-image-1.5", "1K", "4:3", "1536x1024"),
        ("gpt-image-1-mini", "1K", "9:16", "1024x1536"),
        ("gpt-image-1.5", "1K", "3:4", "1024x1536"),
        ("gpt-image-2", "1K", "16:9", "1408x768"),
        ("gpt-image-2.5-flare-2026-09-08", "2K", "3:4", "1792x2560"),
        ("openai/gpt-image-2-2026-04-21", "2K", "16:9", "2816x1536"),
        ("dall-e-3", "1K", "9:16", "1024x1792"),
    ],
)
def test_sizes_follow_the_upstream_models_family(
    upstream_model: str, image_size: ImageSize, aspect_ratio: AspectRatio, size: str
) -> None:
    request = ImageRequest(model=MODEL, prompt="p", image_size=image_size, aspect_ratio=aspect_ratio)
    family = family_of(upstream_model)
    assert refused_parameters(request, family) == []
    assert build_body(request, upstream_model, family)["size"] == size


def test_body_for_gpt_image_and_for_dall_e() -> None:
    request = ImageRequest(
        model=MODEL, prompt="a fox", n=3, output_format="jpeg", extra={"quality": "high", "background": "opaque"}
    )
    assert build_body(request, "gpt-image-1.5", family_of("gpt-image-1.5")) == {
        "model": "gpt-image-1.5",
        "prompt": "a fox",
        "n": 3,
        "size": "1024x1024",
        "output_format": "jpeg",
        "quality": "high",
        "background": "opaque",
    }
    # GPT Image models reject response_format; DALL·E needs it to answer base64 instead of URLs.
    legacy = ImageRequest(model=MODEL, prompt="a fox", extra={"quality": "hd"})
    assert build_body(legacy, "dall-e-3", family_of("dall-e-3")) == {
        "model": "dall-e-3",
        "prompt": "a fox",
        "n": 1,
        "size": "1024x1024",
        "response_format": "b64_json",
        "quality": "hd",
    }


@pytest.mark.parametrize(
    ("upstream_model", "fields", "refused"),
    [
        (
            "gpt-image-1.5",
            {"seed": 7, "negative_prompt": "fog", "person_generation": "dont_allow"},
            ["seed", "negative_prompt", "person_generation"],
        ),
        ("gpt-image-1.5", {"image_size": "2K"}, ["image_size"]),
        ("gpt-image-1.5", {"extra": {"quality": "ultra"}}, ["quality"]),
        ("gpt-image-1.5", {"extra": {"background": "transparent"}, "output_format": "jpeg"}, ["background"]),
        ("gpt-image-1.5", {"extra": {"style": "vivid"}}, ["style"]),
        (
            "dall-e-3",
            {"n": 2, "output_format": "jpeg", "extra": {"background": "opaque"}},
            ["background", "output_format", "n"],
        ),
        ("dall-e-2", {"aspect_ratio": "16:9"}, ["aspect_ratio"]),
        # gpt-image-2 draws no transparent background; only the 2.5 models know xhigh and max.
        ("gpt-image-2", {"extra": {"background": "transparent"}}, ["background"]),
        ("gpt-image-2-2026-04-21", {"extra": {"quality": "xhigh"}}, ["quality"]),
        ("gpt-image-1", {"extra": {"quality": "max"}}, ["quality"]),
        ("gpt-image-2.5-flare", {"extra": {"quality": "max", "background": "transparent"}}, []),
    ],
)
def test_parameters_an_upstream_cannot_honour_are_named(
    upstream_model: str, fields: dict[str, Any], refused: list[str]
) -> None:
    request = ImageRequest(model=MODEL, prompt="p", **fields)
    assert refused_parameters(request, family_of(upstream_model)) == refused


async def test_unsupported_judges_the_upstream_model_the_channel_would_call() -> None:
    channel = _channel({"imagen4": "gpt-image-2", MODEL: "gpt-image-1.5"})
    wide_2k = ImageRequest(model="imagen-4.0-generate-001", prompt="p", image_size="2K", aspect_ratio="16:9")

    async with httpx.AsyncClient() as http:
        provider = OpenAIImagesProvider(http, GuardedFetcher(http, []))
        assert provider.unsupported(wide_2k, channel, "gpt-image-2") == []
        assert provider.unsupported(wide_2k, channel, "gpt-image-1.5") == ["image_size"]
        assert provider.unsupported(ImageRequest(model="imagen4", prompt="p", seed=1), channel, "gpt-image-2") == [
            "seed"
        ]


def test_an_empty_base_url_means_openais_own_api() -> None:
    assert generations_url("") == "https://api.openai.com/v1/images/generations"
    assert generations_url("https://relay.example/openai/v1/") == "https://relay.example/openai/v1/images/generations"


def test_base64_text_is_passed_through_untouched_and_typed_by_its_bytes() -> None:
    png, jpeg = tiny_png_b64(), jpeg_b64()
    items = parse_images(orjson.dumps(openai_answer(png, jpeg, png)), n=2)
    assert items == [  # at most n
        GeneratedImage(Base64Text.of(png), "image/png"),
        GeneratedImage(Base64Text.of(jpeg), "image/jpeg"),
    ]
    url_answer = orjson.dumps({"created": 1, "data": [{"url": "https://cdn.example/a.png"}]})
    assert parse_images(url_answer, n=1) == [ImageAtUrl("https://cdn.example/a.png", 0)]


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"created": 1, "data": []},
        {"created": 1, "data": [{"revised_prompt": "x"}]},
        {"created": 1, "data": [{"b64_json": "@@not base64@@"}]},
        {"error": {"message": "overloaded"}},
        [1, 2],
        "ok",
    ],
)
def test_unexpected_200_shapes_are_retryable(answer: Any) -> None:
    with pytest.raises(UpstreamRetryable, match="upstream"):
        parse_images(orjson.dumps(answer), n=1)


def test_moderation_refusal_is_content_filtered_and_other_400s_are_not() -> None:
    message = MODERATION_BLOCKED["error"]["message"]
    blocked = moderation_block(UpstreamRejected(f"the upstream rejected the request (400): {message}", status=400))
    assert isinstance(blocked, ContentFiltered)
    assert blocked.reasons == [message]
    other = UpstreamRejected("the upstream rejected the request (400): Invalid size '1x1'", status=400)
    assert moderation_block(other) is None
    assert moderation_block(UpstreamRejected("... safety system ...", status=401)) is None
    # OpenAI's own code decides even when a relay rewords the message.
    coded = UpstreamRejected("rejected (400): no", status=400, upstream_code="moderation_blocked")
    assert moderation_block(coded) is not None


async def test_fetch_caps_a_streamed_body_and_accepts_only_images() -> None:
    png = base64.b64decode(tiny_png_b64())
    replies = {
        "/a.png": lambda: httpx.Response(200, content=png),
        "/big.png": lambda: httpx.Response(200, stream=ChunkedBody(png + bytes(64))),
        "/page": lambda: httpx.Response(200, content=b"<html>internal</html>"),
        "/moved": lambda: httpx.Response(302, headers={"location": "/a.png"}),
    }

    def serve(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        # Sent to the address the guard checked, named by the host it was asked for.
        assert (request.url.host, request.headers["host"]) == ("93.184.216.34", "files.example")
        assert request.extensions["sni_hostname"] == "files.example"
        return replies[request.url.path]()

    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        dns = FakeResolver({"files.example": ["93.184.216.34"]})
        fetcher = GuardedFetcher(http, [], dns, max_bytes=len(png) + 10)

        async def fetch(path: str) -> GeneratedImage:
            return await fetch_image(fetcher, f"https://files.example{path}", where="image 1", timeout_s=5)

        image = await fetch("/a.png")
        assert (image.mime_type, image.b64.decode()) == ("image/png", png)
        for path, problem in [("/big.png", "larger than"), ("/page", "not a PNG"), ("/moved", "HTTP 302")]:
            with pytest.raises(UpstreamAmbiguous, match=problem) as caught:
                await fetch(path)
            assert "files.example" not in str(caught.value)  # the URL is never quoted


class ChunkedBody(httpx.AsyncByteStream):
    """A body without Content-Length, sent in small pieces: only counting can stop it."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.content), 16):
            yield self.content[start : start + 16]


def _channel(models: dict[str, str]) -> ChannelSpec:
    return ChannelSpec(
        id="ch",
        name="openai",
        provider="openai-images",
        base_url="https://api.openai.com/v1",
        auth={"api_key": API_KEY},
        models=models,
        priority=0,
        weight=1,
        multiplier=Decimal(1),
        enabled=True,
        timeout_s=30,
        max_concurrency=None,
    )


# --- through the gateway ------------------------------------------------------------------------


@pytest.fixture
async def loopback_gw(settings: Settings) -> AsyncIterator[Harness]:
    """A gateway whose operator allows 127.0.0.1, where the fake upstream serves its image URLs."""
    async with running_app(settings.model_copy(update={"callback_allow_networks": "127.0.0.1/32"})) as gw:
        yield gw


async def _openai_channel(gw: Harness, upstream: FakeUpstream, **fields: Any) -> dict[str, Any]:
    fields.setdefault("models", {MODEL: "gpt-image-1.5"})
    fields.setdefault("only", True)
    return await gw.add_channel(
        provider="openai-images", base_url=upstream.url + "/v1", auth={"api_key": API_KEY}, **fields
    )


async def _assert_nothing_charged(gw: Harness, account_id: str, credits: str = "100") -> None:
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == (credits, "0")
    assert await gw.ledger_problems() == []


async def test_openai_sdk_is_served_by_an_openai_upstream(gw: Harness, upstream: FakeUpstream) -> None:
    await _openai_channel(gw, upstream)
    upstream.respond = lambda r: Reply(json=openai_answer(*[tiny_png_b64()] * r.json["n"]))
    account_id, key = await gw.account_with_key(credits=100)
    transport = httpx2.ASGITransport(app=gw.app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        client = AsyncOpenAI(api_key=key, base_url="http://gateway.test/v1", http_client=http, max_retries=0)
        result = await client.images.generate(model="gpt-image-1.5", prompt="a lighthouse", n=2, quality="high")

    assert result.data is not None and len(result.data) == 2
    for item in result.data:
        assert item.b64_json == tiny_png_b64()
        assert decode_image(item.b64_json).format == "PNG"
    [sent] = upstream.requests
    assert (sent.method, sent.path) == ("POST", GENERATIONS)
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.json == {
        "model": "gpt-image-1.5",
        "prompt": "a lighthouse",
        "n": 2,
        "size": "1024x1024",
        "output_format": "png",
        "quality": "high",
    }
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == ("80", "0")  # 2 images × 10 credits
    assert await gw.ledger_problems() == []


async def test_wide_jpeg_with_background_maps_to_openais_landscape_size(gw: Harness, upstream: FakeUpstream) -> None:
    await _openai_channel(gw, upstream)
    upstream.respond = lambda _r: Reply(json=openai_answer(jpeg_b64()))
    _, key = await gw.account_with_key(credits=100)
    body = {"model": MODEL, "prompt": "a bridge", "size": "1408x768", "output_format": "jpeg", "background": "opaque"}

    response = await gw.generate(key, body)

    assert response.status_code == 200, response.text
    assert response.json()["data"] == [{"b64_json": jpeg_b64(), "mime_type": "image/jpeg"}]
    sent = upstream.requests[0].json
    assert (sent["size"], sent["output_format"], sent["background"]) == ("1536x1024", "jpeg", "opaque")
    assert "response_format" not in sent and "quality" not in sent


async def test_imagen_request_served_by_gpt_image_2_at_the_exact_2k_size(gw: Harness, upstream: FakeUpstream) -> None:
    await _openai_channel(gw, upstream, models={"imagen4": "gpt-image-2"})
    upstream.respond = lambda _r: Reply(json=openai_answer(tiny_png_b64()))
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"prompt": "a tower", "aspect_ratio": "16:9", "image_size": "2K"})

    assert response.status_code == 200, response.text
    assert upstream.requests[0].json["model"] == "gpt-image-2"
    assert upstream.requests[0].json["size"] == "2816x1536"
    assert (await gw.account(account_id))["balance"] == "92"


@pytest.mark.parametrize("body", [{"seed": 42}, {"image_size": "2K"}, {"negative_prompt": "fog"}])
async def test_parameters_openai_cannot_honour_are_400_before_any_upstream_call(
    gw: Harness, upstream: FakeUpstream, body: dict[str, Any]
) -> None:
    # imagen4 declares seed and 2K, so it is this channel (gpt-image-1.5) that cannot honour them.
    await _openai_channel(gw, upstream, models={"imagen4": "gpt-image-1.5"})
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"prompt": "x", "model": "imagen4", **body})

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "unsupported_parameter"
    assert response.json()["error"]["param"] == next(iter(body))
    assert upstream.requests == []
    await _assert_nothing_charged(gw, account_id)


async def test_url_answers_are_fetched_from_the_upstream(loopback_gw: Harness, upstream: FakeUpstream) -> None:
    gw = loopback_gw
    png = base64.b64decode(tiny_png_b64((20, 200, 20)))

    def answer(received: Received) -> Reply:
        if received.path == GENERATIONS:
            return Reply(json={"created": 1, "data": [{"url": f"{upstream.url}/files/img-1.png?sig=abc"}]})
        return Reply(body=png, headers={"content-type": "image/png"})

    await _openai_channel(gw, upstream)
    upstream.respond = answer
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "a leaf"})

    assert response.status_code == 200, response.text
    assert response.json()["data"] == [{"b64_json": base64.b64encode(png).decode(), "mime_type": "image/png"}]
    assert upstream.paths() == [GENERATIONS, "/files/img-1.png"]
    assert "authorization" not in upstream.requests[1].headers  # the channel's key stays with the API
    assert (await gw.account(account_id))["balance"] == "90"


async def test_oversized_url_body_is_refused_without_failing_over(loopback_gw: Harness, upstream: FakeUpstream) -> None:
    gw = loopback_gw
    oversized = b"\x89PNG\r\n\x1a\n" + bytes(MAX_FETCH_BYTES)

    def answer(received: Received) -> Reply:
        if received.path == GENERATIONS:
            return Reply(json={"created": 1, "data": [{"url": f"{upstream.url}/files/huge.png"}]})
        return Reply(body=oversized)

    await _openai_channel(gw, upstream, priority=10)
    await _openai_channel(gw, upstream, only=False, priority=0)
    upstream.respond = answer
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "x"})

    # The first channel already generated (and billed) the image: a second channel is not tried.
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert response.headers["x-should-retry"] == "false"
    assert upstream.paths() == [GENERATIONS, "/files/huge.png"]
    await _assert_nothing_charged(gw, account_id)


async def test_moderation_block_is_400_with_nothing_charged(gw: Harness, upstream: FakeUpstream) -> None:
    await _openai_channel(gw, upstream)
    upstream.respond = lambda _r: Reply(400, MODERATION_BLOCKED)
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "something violent"})

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "moderation_blocked"
    assert response.json()["error"]["type"] == "image_generation_user_error"
    await _assert_nothing_charged(gw, account_id)


@pytest.mark.parametrize("status", [401, 404, 500])
async def test_upstream_errors_are_502_and_never_echo_the_channel_key(
    gw: Harness, upstream: FakeUpstream, status: int
) -> None:
    await _openai_channel(gw, upstream)
    # Like some relays, the fake quotes the credential it received in its error message.
    upstream.respond = lambda r: Reply(
        status, {"error": {"message": f"rejected {r.headers['authorization']}", "type": "x", "code": None}}
    )
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "x"})

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_error"
    assert "[redacted]" in response.text
    if status < 429:
        assert response.headers["x-should-retry"] == "false"
    export = (await gw.admin("GET", "/admin/usage/export")).text
    for text in (response.text, export):
        assert API_KEY not in text and KEY_FRAGMENT not in text
    await _assert_nothing_charged(gw, account_id)


@pytest.mark.parametrize("reply", [Reply(body=b"<html>502 Bad Gateway</html>"), Reply(json={"created": 1, "data": []})])
async def test_malformed_answers_are_502(gw: Harness, upstream: FakeUpstream, reply: Reply) -> None:
    await _openai_channel(gw, upstream)
    upstream.respond = lambda _r: reply
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "x"})

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_error"
    await _assert_nothing_charged(gw, account_id)


async def test_slow_upstream_is_504_after_the_channel_timeout(gw: Harness, upstream: FakeUpstream) -> None:
    await _openai_channel(gw, upstream, timeout_s=0.5)
    upstream.respond = lambda _r: Reply(json=openai_answer(tiny_png_b64()), delay_s=2)
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "x"})

    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "upstream_timeout"
    await _assert_nothing_charged(gw, account_id)


# --- against a fake that answers as OpenAI's Images API does ------------------------------------


def test_usage_keeps_openais_token_counts_and_nothing_else() -> None:
    answer = {**openai_answer(tiny_png_b64()), "usage": {**USAGE, "cost": "9e99", "total_tokens": -1}}
    parsed = parse_answer(orjson.dumps(answer), n=1)
    assert parsed.usage == {k: v for k, v in USAGE.items() if k != "total_tokens"}
    for usage in (None, "lots", [1], {"input_tokens": True}, {"output_tokens": "12"}):
        assert parse_answer(orjson.dumps({**answer, "usage": usage}), n=1).usage is None
    assert parse_answer(orjson.dumps({"data": [{"b64_json": tiny_png_b64()}]}), n=1).usage is None


@pytest.fixture
def openai_fake(upstream: FakeUpstream) -> OpenAIImagesFake:
    fake = OpenAIImagesFake(api_key=API_KEY, url_base=upstream.url)
    upstream.respond = fake
    return fake


async def test_gpt_image_gets_its_own_parameters_and_never_response_format(
    gw: Harness, upstream: FakeUpstream, openai_fake: OpenAIImagesFake
) -> None:
    await _openai_channel(gw, upstream, models={MODEL: "gpt-image-1"})
    account_id, key = await gw.account_with_key(credits=100)
    body = {
        "model": "gpt-image-1.5",  # the catalog alias
        "prompt": "a red kite",
        "n": 2,
        "aspect_ratio": "9:16",
        "output_format": "jpeg",
        "quality": "low",
        "background": "opaque",
        "response_format": "url",  # the gateway's own option: stored files, signed URLs
    }

    response = await gw.generate(key, body)

    assert response.status_code == 200, response.text
    assert [item["mime_type"] for item in response.json()["data"]] == ["image/jpeg"] * 2
    image = await gw.http.get(response.json()["data"][0]["url"])
    assert (image.status_code, image.headers["content-type"]) == (200, "image/jpeg")
    [sent] = upstream.requests
    assert sent.json == {
        "model": "gpt-image-1",
        "prompt": "a red kite",
        "n": 2,
        "size": "1024x1536",
        "output_format": "jpeg",
        "quality": "low",
        "background": "opaque",
    }
    assert (await gw.account(account_id))["balance"] == "80"
    # OpenAI's usage block is kept with the attempt, for the operator and for reconciliation.
    detail = (await gw.admin("GET", f"/admin/requests/{response.json()['id']}")).json()
    [attempt] = detail["attempts"]
    assert (attempt["outcome"], attempt["upstream_model"]) == ("succeeded", "gpt-image-1")
    assert attempt["usage"] == {**USAGE, "output_tokens": 8320}


async def test_a_gpt_image_2_channel_is_asked_for_the_exact_2k_size(
    gw: Harness, upstream: FakeUpstream, openai_fake: OpenAIImagesFake
) -> None:
    await _openai_channel(gw, upstream, models={"imagen4": "gpt-image-2"})
    _, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"prompt": "a harbour", "aspect_ratio": "4:3", "image_size": "2K"})

    assert response.status_code == 200, response.text
    assert upstream.requests[0].json["size"] == "2560x1792"
    assert "response_format" not in upstream.requests[0].json


@pytest.mark.parametrize(
    ("upstream_model", "body", "param"),
    [
        ("gpt-image-1", {"model": "imagen4", "image_size": "2K", "aspect_ratio": "16:9"}, "image_size"),
        ("gpt-image-2", {"model": MODEL, "background": "transparent"}, "background"),
        ("gpt-image-1", {"model": MODEL, "quality": "hd"}, "quality"),
        ("gpt-image-1", {"model": MODEL, "background": "transparent", "output_format": "jpeg"}, "background"),
    ],
)
async def test_what_the_upstream_model_would_refuse_is_400_before_any_hold(
    gw: Harness,
    upstream: FakeUpstream,
    openai_fake: OpenAIImagesFake,
    upstream_model: str,
    body: dict[str, Any],
    param: str,
) -> None:
    await _openai_channel(gw, upstream, models={MODEL: upstream_model, "imagen4": upstream_model})
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"prompt": "x", **body})

    assert response.status_code == 400, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == ("unsupported_parameter", param)
    assert upstream.requests == []
    await _assert_nothing_charged(gw, account_id)


async def test_dall_e_still_asks_for_base64(gw: Harness, upstream: FakeUpstream, openai_fake: OpenAIImagesFake) -> None:
    await _openai_channel(gw, upstream, models={MODEL: "dall-e-3"})
    _, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "a boat", "aspect_ratio": "16:9"})

    assert response.status_code == 200, response.text
    assert upstream.requests[0].json == {
        "model": "dall-e-3",
        "prompt": "a boat",
        "n": 1,
        "size": "1792x1024",
        "response_format": "b64_json",
    }
    detail = (await gw.admin("GET", f"/admin/requests/{response.json()['id']}")).json()
    assert detail["attempts"][0]["usage"] is None  # DALL·E reports no usage


async def test_dall_e_urls_are_fetched_through_the_guarded_fetcher(
    loopback_gw: Harness, upstream: FakeUpstream, openai_fake: OpenAIImagesFake
) -> None:
    gw = loopback_gw
    await _openai_channel(gw, upstream, models={MODEL: "dall-e-2"})
    openai_fake.urls_always = True  # a relay that answers URLs whatever it is asked
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "a leaf", "n": 2})

    assert response.status_code == 200, response.text
    fetched = list(openai_fake.served_files.values())
    assert [base64.b64decode(item["b64_json"]) for item in response.json()["data"]] == fetched
    assert [r.path for r in upstream.requests[1:]] == sorted(openai_fake.served_files)
    assert all(r.headers["user-agent"] == "image-gateway-fetch/1" for r in upstream.requests[1:])
    assert all("authorization" not in r.headers for r in upstream.requests[1:])
    assert (await gw.account(account_id))["balance"] == "80"


async def test_an_image_url_at_a_refused_address_is_a_failed_attempt_and_never_fetched(
    loopback_gw: Harness, upstream: FakeUpstream
) -> None:
    gw = loopback_gw  # 127.0.0.1/32 is allowed: the fake upstream lives there; 127.0.0.3 is not
    async with watching("127.0.0.3") as sentinel:
        upstream.respond = lambda _r: Reply(
            json={"created": 1, "data": [{"url": f"http://127.0.0.3:{sentinel.port}/a.png"}]}
        )
        await _openai_channel(gw, upstream, models={MODEL: "dall-e-3"})
        account_id, key = await gw.account_with_key(credits=100)

        response = await gw.generate(key, {"model": MODEL, "prompt": "x"})

    assert response.status_code == 504, response.text
    assert response.headers["x-should-retry"] == "false"
    assert sentinel.connections == 0
    assert upstream.paths() == [GENERATIONS]
    await _assert_nothing_charged(gw, account_id)


async def _two_channels(gw: Harness, upstream: FakeUpstream, first: OpenAIImagesFake) -> None:
    """`first` (priority 10) answers under /a; a healthy fake under /b serves when it fails over."""
    second = OpenAIImagesFake(api_key=API_KEY)
    fakes = {"a": first, "b": second}

    def route(received: Received) -> Reply:
        prefix, _, rest = received.path.removeprefix("/").partition("/")
        return fakes[prefix](Received(received.method, "/" + rest, received.query, received.headers, received.json))

    upstream.respond = route
    models = {MODEL: "gpt-image-1.5"}
    auth = {"api_key": API_KEY}
    await gw.add_channel(
        name="a",
        provider="openai-images",
        base_url=f"{upstream.url}/a/v1",
        auth=auth,
        models=models,
        priority=10,
        only=True,
    )
    await gw.add_channel(name="b", provider="openai-images", base_url=f"{upstream.url}/b/v1", auth=auth, models=models)


@pytest.mark.parametrize(
    ("broken", "status", "code"),
    [
        (OpenAIImagesFake(api_key="sk-other"), 401, "invalid_api_key"),
        (OpenAIImagesFake(api_key=API_KEY, out_of_quota=True), None, "insufficient_quota"),
    ],
)
async def test_a_channel_with_a_bad_key_or_no_quota_fails_over(
    gw: Harness, upstream: FakeUpstream, broken: OpenAIImagesFake, status: int | None, code: str
) -> None:
    await _two_channels(gw, upstream, broken)
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "a lamp"})

    assert response.status_code == 200, response.text
    assert upstream.paths() == ["/a/v1/images/generations", "/b/v1/images/generations"]
    detail = (await gw.admin("GET", f"/admin/requests/{response.json()['id']}")).json()
    assert [(a["channel"], a["outcome"], a["http_status"], a["error_code"]) for a in detail["attempts"]] == [
        ("a", "rejected" if status else "failed", status, code),
        ("b", "succeeded", None, None),
    ]
    assert (await gw.account(account_id))["balance"] == "90"


async def test_quota_exhausted_everywhere_is_an_upstream_error_not_a_rate_limit(
    gw: Harness, upstream: FakeUpstream, openai_fake: OpenAIImagesFake
) -> None:
    openai_fake.out_of_quota = True
    await _openai_channel(gw, upstream)
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "x"})

    # Retrying later does not help the caller: the operator must pay the upstream.
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_error"
    assert "out of quota" in response.json()["error"]["message"]
    assert "retry-after" not in response.headers
    await _assert_nothing_charged(gw, account_id)


async def test_an_upstream_rate_limit_is_a_429_with_its_retry_after(
    gw: Harness, upstream: FakeUpstream, openai_fake: OpenAIImagesFake
) -> None:
    openai_fake.rate_limited = True
    await _openai_channel(gw, upstream)
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "x"})

    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    assert response.headers["retry-after"] == "7"
    await _assert_nothing_charged(gw, account_id)


async def test_an_upstream_400_names_the_parameter_and_does_not_fail_over(gw: Harness, upstream: FakeUpstream) -> None:
    await _two_channels(gw, upstream, OpenAIImagesFake(api_key=API_KEY))
    # A relay with a narrower quality list than OpenAI's: its refusal is passed on, not retried.
    upstream.respond = lambda _r: invalid_value("quality", "high", ("low", "medium"))
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "x", "quality": "high"})

    assert response.status_code == 502, response.text
    assert response.headers["x-should-retry"] == "false"
    assert "Invalid value: 'high'" in response.json()["error"]["message"]
    assert upstream.paths() == ["/a/v1/images/generations"]
    await _assert_nothing_charged(gw, account_id)


async def test_a_moderation_refusal_is_not_tried_on_another_channel(gw: Harness, upstream: FakeUpstream) -> None:
    await _two_channels(gw, upstream, OpenAIImagesFake(api_key=API_KEY))
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": f"a {BLOCKED_WORD}"})

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "moderation_blocked"
    assert upstream.paths() == ["/a/v1/images/generations"]
    await _assert_nothing_charged(gw, account_id)


async def test_a_retired_model_fails_over(gw: Harness, upstream: FakeUpstream) -> None:
    await _two_channels(gw, upstream, OpenAIImagesFake(api_key=API_KEY))
    await gw.add_channel(
        name="old",
        provider="openai-images",
        base_url=f"{upstream.url}/a/v1",
        auth={"api_key": API_KEY},
        models={MODEL: "gpt-image-0"},
        priority=20,
    )
    _, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "x"})

    assert response.status_code == 200, response.text
    detail = (await gw.admin("GET", f"/admin/requests/{response.json()['id']}")).json()
    assert [(a["channel"], a["http_status"], a["error_code"]) for a in detail["attempts"]] == [
        ("old", 404, "model_not_found"),
        ("a", None, None),
    ]
