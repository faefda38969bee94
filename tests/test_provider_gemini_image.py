"""The `gemini-image` adapter: Gemini image models behind `:generateContent`, serving catalog models
such as `imagen4` through channel model mapping.

Translation is tested as pure functions on bodies shaped like Google's documented responses; the
rest drives the real gateway against a fake upstream HTTP server.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.images import Base64Text, GeneratedImage, ImageRequest
from app.providers.credentials import GoogleTokenSource
from app.providers.errors import (
    ContentFiltered,
    UpstreamAmbiguous,
    UpstreamError,
    UpstreamRejected,
    UpstreamRetryable,
)
from app.providers.gemini_image import (
    CallOutcome,
    GeminiImageProvider,
    Withheld,
    build_body,
    combine,
    generate_content_url,
    is_vertex,
    parse_response,
    unsupported_parameters,
)
from app.specs import ChannelSpec
from tests.support.fakes.upstream import FakeUpstream, Received, Reply, tiny_png_b64
from tests.support.harness import Harness

GEMINI_PATH = "/v1beta/models/gemini-3.1-flash-image:generateContent"
VERTEX_BASE = "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google"
API_KEY = "AIzaSyTEST-gemini-channel-key"


# Response bodies shaped as Google documents them (camelCase REST JSON).


def image_answer(b64: str, mime_type: str = "image/png") -> dict[str, Any]:
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"inlineData": {"mimeType": mime_type, "data": b64}}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 1290, "totalTokenCount": 1302},
        "modelVersion": "gemini-3.1-flash-image",
        "responseId": "mD8gZ5-rJqOAz7IP5Z6u0Qk",
    }


DRAFT_PNG, FINAL_PNG = tiny_png_b64((90, 90, 90)), tiny_png_b64((10, 160, 220))
THINKING_ANSWER: dict[str, Any] = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "Composing a lighthouse at dusk…", "thought": True},
                    {"inlineData": {"mimeType": "image/png", "data": DRAFT_PNG}, "thought": True},
                    {"text": "Here is your lighthouse."},
                    {"inlineData": {"mimeType": "image/png", "data": FINAL_PNG}, "thoughtSignature": "c2ln"},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "modelVersion": "gemini-3-pro-image",
}
BLOCKED_PROMPT: dict[str, Any] = {
    "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
    "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
    "modelVersion": "gemini-3.1-flash-image",
}
WITHHELD_IMAGE: dict[str, Any] = {
    "candidates": [
        {
            "content": {"role": "model"},
            "finishReason": "IMAGE_SAFETY",
            "finishMessage": "Unable to show the generated image.",
            "index": 0,
        }
    ],
    "modelVersion": "gemini-3.1-flash-image",
}
TEXT_ONLY: dict[str, Any] = {
    "candidates": [
        {"content": {"role": "model", "parts": [{"text": "I can describe it instead."}]}, "finishReason": "NO_IMAGE"}
    ]
}


def google_error(status: int, message: str) -> dict[str, Any]:
    names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}
    names |= {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
    return {"error": {"code": status, "message": message, "status": names[status]}}


def channel(base_url: str = "https://generativelanguage.googleapis.com/v1beta", **auth: Any) -> ChannelSpec:
    return ChannelSpec(
        id="ch_test",
        name="gemini",
        provider="gemini-image",
        base_url=base_url,
        auth=auth,
        models={"imagen4": "gemini-3.1-flash-image"},
        priority=0,
        weight=1,
        multiplier=Decimal(1),
        enabled=True,
        timeout_s=30.0,
        max_concurrency=None,
    )


class _Body(httpx.AsyncByteStream):
    def __init__(self, content: bytes) -> None:
        self.content = content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.content


def streamed(body: dict[str, Any]) -> httpx.Response:
    """A mocked answer that arrives as a stream, as from the network (post_json reads raw chunks)."""
    return httpx.Response(200, stream=_Body(json.dumps(body).encode()), headers={"content-type": "application/json"})


# Pure translation.


def test_body_for_the_gemini_api_asks_for_one_image_of_the_requested_shape() -> None:
    request = ImageRequest(model="imagen4", prompt="a lighthouse at dusk", aspect_ratio="16:9", image_size="2K")
    assert build_body(request, vertex=False) == {
        "contents": [{"role": "user", "parts": [{"text": "a lighthouse at dusk"}]}],
        "generationConfig": {
            "responseModalities": ["IMAGE"],
            "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"},
        },
    }


def test_body_for_vertex_adds_format_people_and_a_distinct_int32_seed_per_image() -> None:
    request = ImageRequest(
        model="imagen4", prompt="p", seed=4294967295, person_generation="dont_allow", output_format="jpeg"
    )
    first, second = (build_body(request, vertex=True, index=i)["generationConfig"] for i in (0, 1))
    assert first["imageConfig"] == {
        "aspectRatio": "1:1",
        "imageSize": "1K",
        "imageOutputOptions": {"mimeType": "image/jpeg"},
        "personGeneration": "ALLOW_NONE",
    }
    # uint32 seeds are read as int32 (the upstream's type) and offset by the image index.
    assert (first["seed"], second["seed"]) == (-1, 0)


@pytest.mark.parametrize(
    ("base_url", "vertex"),
    [
        ("https://generativelanguage.googleapis.com/v1beta", False),
        (VERTEX_BASE, True),
        ("https://aiplatform.googleapis.com/v1/publishers/google", True),
        ("https://relay.example/gemini/v1beta", False),
    ],
)
def test_url_and_dialect_follow_the_channel_base_url(base_url: str, vertex: bool) -> None:
    assert (
        generate_content_url(base_url, "gemini-3-pro-image") == f"{base_url}/models/gemini-3-pro-image:generateContent"
    )
    assert is_vertex(base_url) is vertex


@pytest.mark.parametrize(
    ("fields", "gemini_api", "vertex"),
    [
        ({}, [], []),
        ({"seed": 1}, [], []),
        ({"negative_prompt": "blur"}, ["negative_prompt"], ["negative_prompt"]),
        ({"person_generation": "allow_all"}, ["person_generation"], []),
        ({"output_format": "jpeg"}, ["output_format"], []),
        (
            {"extra": {"quality": "high", "background": "transparent"}},
            ["background", "quality"],
            ["background", "quality"],
        ),
    ],
)
def test_parameters_the_upstream_cannot_honour_are_reported(
    fields: dict[str, Any], gemini_api: list[str], vertex: list[str]
) -> None:
    request = ImageRequest(model="imagen4", prompt="p", **fields)
    assert unsupported_parameters(request, vertex=False) == gemini_api
    assert unsupported_parameters(request, vertex=True) == vertex


def test_the_final_image_is_passed_through_with_its_caption_and_drafts_are_ignored() -> None:
    b64 = tiny_png_b64()
    assert parse_response(orjson.dumps(image_answer(b64))) == GeneratedImage(Base64Text.of(b64), "image/png")
    # The thought's text and draft are left out; the model's words beside the final image travel
    # with it (the :generateContent relay passes them through).
    assert parse_response(orjson.dumps(THINKING_ANSWER)) == GeneratedImage(
        Base64Text.of(FINAL_PNG), "image/png", text="Here is your lighthouse."
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (BLOCKED_PROMPT, "PROHIBITED_CONTENT"),
        (WITHHELD_IMAGE, "IMAGE_SAFETY: Unable to show the generated image."),
        ({"candidates": [{"finishReason": "SAFETY", "index": 0}]}, "SAFETY"),
    ],
)
def test_safety_blocks_are_withheld_with_their_reason(body: dict[str, Any], reason: str) -> None:
    assert parse_response(orjson.dumps(body)) == Withheld(reason)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (TEXT_ONLY, "without an image (finishReason NO_IMAGE)"),
        ({}, "not a generateContent response"),
        ([image_answer("QQ==")], "not a generateContent response"),
        ({"candidates": "QQ=="}, "not a generateContent response"),
        ({"candidates": [{"content": {"parts": [{"inlineData": {"data": 7}}]}}]}, "not a generateContent response"),
    ],
)
def test_an_answer_without_image_or_block_is_retryable(body: Any, message: str) -> None:
    with pytest.raises(UpstreamRetryable, match=re.escape(message)):
        parse_response(orjson.dumps(body))


IMAGE = GeneratedImage(b64=Base64Text.of(tiny_png_b64()), mime_type="image/png")
RETRYABLE = UpstreamRetryable("the upstream failed (503)", status=503)
REJECTED = UpstreamRejected("the upstream rejected the request (400)", status=400)
AMBIGUOUS = UpstreamAmbiguous("the upstream did not answer in time (ReadTimeout)")


@pytest.mark.parametrize(
    ("outcomes", "raised"),
    [
        ([RETRYABLE, REJECTED, AMBIGUOUS], REJECTED),
        ([RETRYABLE, AMBIGUOUS], AMBIGUOUS),
        ([Withheld("SAFETY"), RETRYABLE], RETRYABLE),
    ],
)
def test_when_every_call_failed_the_most_telling_error_is_raised(
    outcomes: list[CallOutcome], raised: UpstreamError
) -> None:
    with pytest.raises(UpstreamError) as caught:
        combine(outcomes)
    assert caught.value is raised


def test_combine_delivers_what_arrived_and_filters_only_when_all_were_withheld() -> None:
    result = combine([RETRYABLE, IMAGE, Withheld("IMAGE_SAFETY")])
    assert (result.images, result.filtered_reasons) == ([IMAGE], ["IMAGE_SAFETY"])
    with pytest.raises(ContentFiltered) as caught:
        combine([Withheld("PROHIBITED_CONTENT"), Withheld("IMAGE_SAFETY")])
    assert caught.value.reasons == ["PROHIBITED_CONTENT", "IMAGE_SAFETY"]


@pytest.mark.parametrize(
    ("style", "header", "query"),
    [
        (None, ("x-goog-api-key", API_KEY), {}),
        ("bearer", ("authorization", f"Bearer {API_KEY}"), {}),
        ("query", None, {"key": API_KEY}),
    ],
)
async def test_api_key_travels_as_the_channel_style_says(
    style: str | None, header: tuple[str, str] | None, query: dict[str, str]
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return streamed(image_answer(tiny_png_b64()))

    auth = {"api_key": API_KEY} | ({"style": style} if style else {})
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        result = await GeminiImageProvider(http, GoogleTokenSource()).generate(
            ImageRequest(model="imagen4", prompt="p"), channel(**auth), "gemini-3.1-flash-image"
        )
    assert result.images == [IMAGE]
    (sent,) = seen
    assert dict(sent.url.params) == query
    credentials = {name: sent.headers[name] for name in ("x-goog-api-key", "authorization") if name in sent.headers}
    assert credentials == (dict([header]) if header else {})


async def test_cancelling_the_request_cancels_every_call_in_flight() -> None:
    started: list[int] = []
    cancelled: list[int] = []
    all_started = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        seed = json.loads(request.content)["generationConfig"]["seed"]
        started.append(seed)
        if len(started) == 3:
            all_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(seed)
            raise
        raise AssertionError("unreachable")

    async with httpx.AsyncClient(transport=httpx.MockTransport(hang)) as http:
        provider = GeminiImageProvider(http, GoogleTokenSource())
        request = ImageRequest(model="imagen4", prompt="p", n=3, seed=10)
        task = asyncio.create_task(provider.generate(request, channel(api_key=API_KEY), "gemini-3.1-flash-image"))
        await asyncio.wait_for(all_started.wait(), timeout=5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sorted(cancelled) == [10, 11, 12]


# Through the gateway.


async def gemini_only(gw: Harness, upstream: FakeUpstream, **fields: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "provider": "gemini-image",
        "base_url": upstream.url + "/v1beta",
        "auth": {"api_key": API_KEY},
        "models": {"imagen4": "gemini-3.1-flash-image"},
        "multiplier": "1.25",
    }
    return await gw.add_channel(only=True, **(defaults | fields))


async def assert_untouched(gw: Harness, account_id: str, balance: str = "1000") -> None:
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == (balance, "0")
    assert await gw.ledger_problems() == []


async def test_imagen4_is_served_by_a_gemini_image_model_one_call_per_image(
    gw: Harness, upstream: FakeUpstream
) -> None:
    colours = iter([(200, 0, 0), (0, 200, 0), (0, 0, 200)])
    sent: list[str] = []

    def answer(received: Received) -> Reply:
        sent.append(tiny_png_b64(next(colours)))
        return Reply(json=image_answer(sent[-1]))

    upstream.respond = answer
    await gemini_only(gw, upstream)
    account_id, key = await gw.account_with_key(credits=1000)
    body = {"model": "imagen4", "prompt": "a lighthouse", "n": 3, "aspect_ratio": "16:9", "image_size": "2K", "seed": 7}

    response = await gw.generate(key, body)

    assert response.status_code == 200, response.text
    result = response.json()
    assert sorted(item["b64_json"] for item in result["data"]) == sorted(sent)  # base64 text untouched
    assert {item["mime_type"] for item in result["data"]} == {"image/png"}
    assert result["billing"] == {
        "images": 3,
        "unit_credits": "8",
        "model_multiplier": "1",
        "channel_multiplier": "1.25",
        "credits": "30",
        "balance": "970",
    }
    assert upstream.paths() == [GEMINI_PATH] * 3
    assert sorted(r.json["generationConfig"]["seed"] for r in upstream.requests) == [7, 8, 9]
    for received in upstream.requests:
        assert received.json["contents"] == [{"role": "user", "parts": [{"text": "a lighthouse"}]}]
        assert received.json["generationConfig"]["responseModalities"] == ["IMAGE"]
        assert received.json["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}
        assert received.headers["x-goog-api-key"] == API_KEY
        assert "authorization" not in received.headers and received.query == {}
    await assert_untouched(gw, account_id, balance="970")


@pytest.mark.parametrize(
    ("odd_one_out", "filtered"),
    [
        (Reply(500, google_error(500, "Internal error encountered.")), []),
        (Reply(json=WITHHELD_IMAGE), [{"reason": "IMAGE_SAFETY: Unable to show the generated image."}]),
        (Reply(json=image_answer(tiny_png_b64()), delay_s=2), []),  # a straggler past the channel timeout
    ],
)
async def test_partial_success_is_billed_for_the_images_that_arrived(
    gw: Harness, upstream: FakeUpstream, odd_one_out: Reply, filtered: list[dict[str, str]]
) -> None:
    calls = itertools.count()
    upstream.respond = lambda _r: odd_one_out if next(calls) == 0 else Reply(json=image_answer(tiny_png_b64()))
    await gemini_only(gw, upstream, timeout_s=1)
    account_id, key = await gw.account_with_key(credits=1000)

    response = await gw.generate(key, {"model": "imagen4", "prompt": "a fox", "n": 3})

    assert response.status_code == 200, response.text
    result = response.json()
    assert len(result["data"]) == 2
    assert result["filtered"] == filtered
    assert (result["billing"]["images"], result["billing"]["credits"]) == (2, "20")  # 8 × 1.25 × 2
    assert len(upstream.requests) == 3
    await assert_untouched(gw, account_id, balance="980")


async def test_every_image_blocked_is_moderation_blocked_and_free(gw: Harness, upstream: FakeUpstream) -> None:
    calls = itertools.count()
    upstream.respond = lambda _r: Reply(json=BLOCKED_PROMPT if next(calls) == 0 else WITHHELD_IMAGE)
    await gemini_only(gw, upstream)
    account_id, key = await gw.account_with_key(credits=1000)

    response = await gw.generate(key, {"model": "imagen4", "prompt": "something forbidden", "n": 2})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("moderation_blocked", "image_generation_user_error")
    await assert_untouched(gw, account_id)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500, 503])
async def test_upstream_errors_map_to_502_and_never_leak_the_key(
    gw: Harness, upstream: FakeUpstream, status: int
) -> None:
    canary = "AIzaSyCANARY-do-not-leak-7f3a9c"

    def answer(received: Received) -> Reply:
        echoed = received.headers.get("x-goog-api-key", "")
        return Reply(status, google_error(status, f"API key {echoed} is not valid for this request."))

    upstream.respond = answer
    await gemini_only(gw, upstream, auth={"api_key": canary})
    account_id, key = await gw.account_with_key(credits=1000)

    response = await gw.generate(key, {"model": "imagen4", "prompt": "x"})

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_error"
    assert canary not in response.text
    assert "[redacted]" in response.json()["error"]["message"]
    if status in (500, 503):
        assert response.headers.get("x-should-retry") != "false"  # another try may succeed
    else:
        assert response.headers["x-should-retry"] == "false"
    assert upstream.paths() == [GEMINI_PATH]
    await assert_untouched(gw, account_id)


async def test_a_slow_upstream_times_out_with_504_and_the_hold_released(gw: Harness, upstream: FakeUpstream) -> None:
    upstream.respond = lambda _r: Reply(json=image_answer(tiny_png_b64()), delay_s=2)
    await gemini_only(gw, upstream, timeout_s=0.5)
    account_id, key = await gw.account_with_key(credits=1000)

    response = await gw.generate(key, {"model": "imagen4", "prompt": "x", "n": 2})

    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "upstream_timeout"
    await assert_untouched(gw, account_id)


@pytest.mark.parametrize("reply", [Reply(body=b"<html>502 Bad Gateway</html>"), Reply(json={"unexpected": True})])
async def test_a_200_that_is_not_a_generate_content_answer_is_502(
    gw: Harness, upstream: FakeUpstream, reply: Reply
) -> None:
    upstream.respond = lambda _r: reply
    await gemini_only(gw, upstream)
    account_id, key = await gw.account_with_key(credits=1000)

    response = await gw.generate(key, {"model": "imagen4", "prompt": "x"})

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_error"
    await assert_untouched(gw, account_id)


async def test_failover_bills_at_the_multiplier_of_the_channel_that_served(gw: Harness, upstream: FakeUpstream) -> None:
    def answer(received: Received) -> Reply:
        if received.path.startswith("/primary/"):
            return Reply(503, google_error(503, "The model is overloaded. Please try again later."))
        return Reply(json=image_answer(tiny_png_b64()))

    upstream.respond = answer
    await gemini_only(gw, upstream, base_url=upstream.url + "/primary/v1beta", priority=10, multiplier="2")
    await gemini_only(gw, upstream, base_url=upstream.url + "/backup/v1beta", priority=0, multiplier="0.5")
    account_id, key = await gw.account_with_key(credits=1000)

    response = await gw.generate(key, {"model": "imagen4", "prompt": "x", "n": 2})

    assert response.status_code == 200, response.text
    assert response.json()["billing"]["channel_multiplier"] == "0.5"
    assert response.json()["billing"]["credits"] == "8"  # 8 × 0.5 × 2
    assert upstream.paths() == ["/primary" + GEMINI_PATH] * 2 + ["/backup" + GEMINI_PATH] * 2
    await assert_untouched(gw, account_id, balance="992")


@pytest.mark.parametrize(
    "extra", [{"negative_prompt": "blur"}, {"output_format": "jpeg"}, {"person_generation": "allow_adult"}]
)
async def test_parameters_gemini_cannot_honour_are_refused_before_any_hold(
    gw: Harness, upstream: FakeUpstream, extra: dict[str, str]
) -> None:
    await gemini_only(gw, upstream)
    account_id, key = await gw.account_with_key(credits=1000)

    response = await gw.generate(key, {"model": "imagen4", "prompt": "x", **extra})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("unsupported_parameter", next(iter(extra)))
    assert upstream.requests == []
    await assert_untouched(gw, account_id)


@cache
def _private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


async def test_a_service_account_channel_sends_an_oauth_token(
    gw: Harness, upstream: FakeUpstream, tmp_path: Path
) -> None:
    def answer(received: Received) -> Reply:
        if received.path == "/token":
            return Reply(json={"access_token": "ya29.fake-access-token", "expires_in": 3600, "token_type": "Bearer"})
        return Reply(json=image_answer(tiny_png_b64()))

    upstream.respond = answer
    key_file = tmp_path / "service-account.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "p",
                "private_key_id": "1",
                "private_key": _private_key_pem(),
                "client_email": "gateway@p.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": upstream.url + "/token",
            }
        )
    )
    vertex = upstream.url + "/v1/projects/p/locations/us-central1/publishers/google"
    await gemini_only(gw, upstream, base_url=vertex, auth={"service_account_file": str(key_file)})
    account_id, key = await gw.account_with_key(credits=1000)

    response = await gw.generate(key, {"model": "imagen4", "prompt": "x", "n": 2})

    assert response.status_code == 200, response.text
    token_calls = [r for r in upstream.requests if r.path == "/token"]
    image_calls = [r for r in upstream.requests if r.path != "/token"]
    assert len(token_calls) == 1  # one token, shared by both calls
    assert [r.path for r in image_calls] == [
        "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-3.1-flash-image:generateContent"
    ] * 2
    for received in image_calls:
        assert received.headers["authorization"] == "Bearer ya29.fake-access-token"
        assert "x-goog-api-key" not in received.headers
        assert received.json["generationConfig"]["imageConfig"]["imageOutputOptions"] == {"mimeType": "image/png"}
    await assert_untouched(gw, account_id, balance="980")
