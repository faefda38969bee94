"""The `google-imagen` adapter: Imagen `:predict` translation without a network, then end to end
through the gateway against a fake Gemini API, Vertex AI or relay."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from PIL import Image

from app.images import ImageRequest
from app.providers.errors import ContentFiltered, UpstreamRetryable
from app.providers.google_imagen import default_key_style
from app.providers.imagen_wire import (
    google_base,
    is_vertex,
    parse_predictions,
    predict_body,
    predict_url,
    unsupported_parameters,
)
from app.specs import ChannelSpec
from tests.support.fakes.upstream import FakeUpstream, Received, Reply, tiny_png_b64
from tests.support.harness import Harness

GEMINI_API = "https://generativelanguage.googleapis.com/v1beta"
VERTEX = "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google"
VERTEX_EXPRESS = "https://aiplatform.googleapis.com/v1beta1/publishers/google"
RELAY = "https://imagen-relay.example.com/v1beta"
STANDARD = "imagen-4.0-generate-001"
FAST = "imagen-4.0-fast-generate-001"
KEY = "AIza-test-key-0001"
RED, GREEN, BLUE = tiny_png_b64((200, 30, 30)), tiny_png_b64((30, 200, 30)), tiny_png_b64((30, 30, 200))


def jpeg_b64(colour: tuple[int, int, int]) -> str:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, format="JPEG")
    return base64.b64encode(out.getvalue()).decode()


RED_JPEG, GREEN_JPEG = jpeg_b64((200, 30, 30)), jpeg_b64((30, 200, 30))

# Recorded shape of a Vertex answer with includeRaiReason and safety attributes: two images, one
# filtered, and the prompt's own safety scores.
VERTEX_ANSWER: dict[str, Any] = {
    "predictions": [
        {"mimeType": "image/png", "bytesBase64Encoded": RED, "prompt": "a red barn, golden hour"},
        {"raiFilteredReason": "56562880: the image was filtered for violence."},
        {"mimeType": "image/png", "bytesBase64Encoded": GREEN, "prompt": "a red barn, golden hour"},
        {"contentType": "Positive Prompt", "safetyAttributes": {"categories": ["Violence"], "scores": [0.1]}},
    ]
}


def channel_spec(base_url: str, auth: dict[str, Any] | None = None) -> ChannelSpec:
    return ChannelSpec(
        id="ch_1",
        name="imagen",
        provider="google-imagen",
        base_url=base_url,
        # The fake stands in for Google's own host, so it is told to expect Google's key header.
        auth=auth if auth is not None else {"api_key": KEY, "style": "x-goog-api-key"},
        models={"imagen4": STANDARD},
        priority=0,
        weight=1,
        multiplier=Decimal(1),
        enabled=True,
        timeout_s=60.0,
        max_concurrency=None,
    )


# --- pure translation -----------------------------------------------------------------------------


def test_gemini_api_body_always_sends_sample_count_and_only_accepted_fields() -> None:
    request = ImageRequest(model="imagen4", prompt="a barn", aspect_ratio="16:9", image_size="2K")
    assert predict_body(request, vertex=False, fast=False) == {
        "instances": [{"prompt": "a barn"}],
        "parameters": {
            "sampleCount": 1,
            "aspectRatio": "16:9",
            "outputOptions": {"mimeType": "image/png"},
            "includeRaiReason": True,
            "sampleImageSize": "2K",
        },
    }


def test_vertex_body_carries_seed_with_watermark_off_and_negative_prompt() -> None:
    request = ImageRequest(
        model="imagen4",
        prompt="a barn",
        n=3,
        seed=7,
        negative_prompt="people",
        person_generation="dont_allow",
        output_format="jpeg",
    )
    parameters = predict_body(request, vertex=True, fast=False)["parameters"]
    assert parameters["sampleCount"] == 3
    assert (parameters["seed"], parameters["addWatermark"]) == (7, False)
    assert parameters["negativePrompt"] == "people"
    assert parameters["personGeneration"] == "dont_allow"
    assert parameters["outputOptions"] == {"mimeType": "image/jpeg"}


def test_fast_models_get_no_sample_image_size() -> None:
    parameters = predict_body(ImageRequest(model="imagen4-fast", prompt="x"), vertex=True, fast=True)["parameters"]
    assert "sampleImageSize" not in parameters
    assert "addWatermark" not in parameters  # only with a seed


@pytest.mark.parametrize(
    ("request_fields", "vertex", "fast", "expected"),
    [
        ({"seed": 1, "negative_prompt": "x"}, False, False, ["negative_prompt", "seed"]),
        ({"seed": 1, "negative_prompt": "x"}, True, False, []),
        ({"person_generation": "allow_adult"}, False, False, []),
        ({"image_size": "2K"}, True, True, ["image_size"]),
        ({"image_size": "1K"}, False, True, []),
        ({"extra": {"quality": "high", "background": "transparent"}}, True, False, ["background", "quality"]),
    ],
)
def test_unsupported_parameters(request_fields: dict[str, Any], vertex: bool, fast: bool, expected: list[str]) -> None:
    request = ImageRequest(model="imagen4", prompt="x", **request_fields)
    assert unsupported_parameters(request, vertex=vertex, fast=fast) == expected


@pytest.mark.parametrize(
    ("base_url", "auth", "vertex"),
    [
        (GEMINI_API, {"api_key": KEY}, False),
        (RELAY, {"api_key": KEY, "style": "bearer"}, False),
        (VERTEX, {"api_key": KEY}, True),
        (VERTEX_EXPRESS, {"api_key": KEY}, True),
        ("https://vertex-proxy.internal/v1", {"service_account_file": "/etc/sa.json"}, True),
    ],
)
def test_vertex_is_recognised_by_url_shape_or_service_account(
    base_url: str, auth: dict[str, Any], vertex: bool
) -> None:
    assert is_vertex(channel_spec(base_url, auth)) is vertex


def test_predict_url_appends_model_path() -> None:
    assert predict_url(GEMINI_API + "/", STANDARD) == f"{GEMINI_API}/models/{STANDARD}:predict"


def test_parse_passes_base64_through_and_collects_filter_reasons() -> None:
    result = parse_predictions(orjson.dumps(VERTEX_ANSWER), requested=3)
    assert [image.b64.text() for image in result.images] == [RED, GREEN]
    assert result.filtered_reasons == ["56562880: the image was filtered for violence."]


def test_parse_keeps_the_upstream_text_byte_for_byte() -> None:
    # Some JSON encoders escape "/" (PHP's does): the token is passed on exactly as it came, and
    # still decodes to the same image.
    raw = base64.b64decode(RED) + bytes(range(256))  # an image whose base64 has slashes
    text = base64.b64encode(raw).decode()
    escaped = text.replace("/", "\\/").encode()
    assert escaped.count(b"\\/") > 3
    body = b'{"predictions": [{"bytesBase64Encoded": "' + escaped + b'", "mimeType": "image/png"}]}'
    (image,) = parse_predictions(body, requested=1).images
    assert image.b64.json == b'"' + escaped + b'"'
    assert image.b64.text() == text and image.b64.decode() == raw


def test_parse_never_returns_more_images_than_requested() -> None:
    body = orjson.dumps({"predictions": [{"bytesBase64Encoded": b64} for b64 in (RED, GREEN, BLUE)]})
    result = parse_predictions(body, requested=2)
    assert [(image.b64.text(), image.mime_type) for image in result.images] == [
        (RED, "image/png"),
        (GREEN, "image/png"),
    ]


@pytest.mark.parametrize(
    ("body", "reasons"),
    [
        ({}, []),
        ({"predictions": [{"raiFilteredReason": "blocked: minors"}]}, ["blocked: minors"]),
        ({"predictions": [{"contentType": "Positive Prompt", "safetyAttributes": {}}]}, []),
    ],
)
def test_parse_nothing_delivered_is_content_filtered(body: dict[str, Any], reasons: list[str]) -> None:
    with pytest.raises(ContentFiltered) as caught:
        parse_predictions(orjson.dumps(body), requested=1)
    assert caught.value.reasons == reasons


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"predictions": {"bytesBase64Encoded": RED}},
        {"predictions": ["not an object"]},
        {"predictions": [{"mimeType": "image/png"}]},
        {"predictions": [{"bytesBase64Encoded": 42}]},
    ],
)
def test_parse_unexpected_shape_is_retryable(body: Any) -> None:
    with pytest.raises(UpstreamRetryable, match="answered 200"):
        parse_predictions(orjson.dumps(body), requested=1)


# --- through the gateway ---------------------------------------------------------------------------


def answer(*items: dict[str, Any]) -> Reply:
    return Reply(json={"predictions": list(items)})


def image(b64: str, mime: str = "image/png") -> dict[str, Any]:
    return {"bytesBase64Encoded": b64, "mimeType": mime}


async def imagen_channel(
    gw: Harness,
    upstream: FakeUpstream,
    *,
    path: str = "/v1beta",
    auth: dict[str, Any] | None = None,
    upstream_model: str = STANDARD,
    only: bool = True,
    **fields: Any,
) -> dict[str, Any]:
    return await gw.add_channel(
        only=only,
        provider="google-imagen",
        base_url=upstream.url + path,
        # The fake stands in for Google's own host, so it is told to expect Google's key header.
        auth=auth if auth is not None else {"api_key": KEY, "style": "x-goog-api-key"},
        models={"imagen4": upstream_model},
        **fields,
    )


async def assert_nothing_charged(gw: Harness, account_id: str, credits: str) -> None:
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == (credits, "0")
    assert await gw.ledger_problems() == []


async def test_success_sends_imagen_body_and_bills_delivered_images(gw: Harness, upstream: FakeUpstream) -> None:
    await imagen_channel(gw, upstream)
    upstream.respond = lambda _r: answer(
        image(RED_JPEG, "image/jpeg"),
        image(GREEN_JPEG, "image/jpeg"),
        {"contentType": "Positive Prompt", "safetyAttributes": {"categories": [], "scores": []}},
    )
    account_id, key = await gw.account_with_key(credits=100)
    body = {
        "prompt": "a red barn",
        "n": 2,
        "image_size": "2K",
        "aspect_ratio": "4:3",
        "person_generation": "allow_adult",
        "output_format": "jpeg",
    }

    response = await gw.generate(key, body)

    assert response.status_code == 200, response.text
    result = response.json()
    assert [(d["b64_json"], d["mime_type"]) for d in result["data"]] == [
        (RED_JPEG, "image/jpeg"),
        (GREEN_JPEG, "image/jpeg"),
    ]
    assert result["filtered"] == []
    assert (result["billing"]["images"], result["billing"]["credits"], result["billing"]["balance"]) == (2, "16", "84")
    (sent,) = upstream.requests
    assert sent.path == f"/v1beta/models/{STANDARD}:predict"
    assert sent.headers["x-goog-api-key"] == KEY
    assert "authorization" not in sent.headers and "key" not in sent.query
    assert sent.json == {
        "instances": [{"prompt": "a red barn"}],
        "parameters": {
            "sampleCount": 2,
            "aspectRatio": "4:3",
            "sampleImageSize": "2K",
            "personGeneration": "allow_adult",
            "outputOptions": {"mimeType": "image/jpeg"},
            "includeRaiReason": True,
        },
    }
    assert (await gw.account(account_id))["balance"] == "84"
    assert await gw.ledger_problems() == []


def bearer_sent(sent: Received) -> bool:
    return sent.headers.get("authorization") == f"Bearer {KEY}" and "x-goog-api-key" not in sent.headers


def query_sent(sent: Received) -> bool:
    return sent.query.get("key") == KEY and "authorization" not in sent.headers and "x-goog-api-key" not in sent.headers


async def test_relay_channel_defaults_to_bearer(gw: Harness, upstream: FakeUpstream) -> None:
    # Any host but Google's own is an Imagen-format relay: the key travels as a Bearer token.
    await imagen_channel(gw, upstream, auth={"api_key": KEY})
    upstream.respond = lambda _r: answer(image(RED))
    _, key = await gw.account_with_key()
    assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
    assert bearer_sent(upstream.requests[0])


@pytest.mark.parametrize(("style", "check"), [("bearer", bearer_sent), ("query", query_sent)])
async def test_auth_style_decides_where_the_key_travels(
    gw: Harness, upstream: FakeUpstream, style: str, check: Callable[[Received], bool]
) -> None:
    await imagen_channel(gw, upstream, auth={"api_key": KEY, "style": style})
    upstream.respond = lambda _r: answer(image(RED))
    _, key = await gw.account_with_key()
    response = await gw.generate(key, {"prompt": "x"})
    assert response.status_code == 200, response.text
    assert check(upstream.requests[0])
    assert upstream.requests[0].json["parameters"]["sampleCount"] == 1


async def test_partial_filtering_charges_only_delivered_images(gw: Harness, upstream: FakeUpstream) -> None:
    await imagen_channel(gw, upstream)
    upstream.respond = lambda _r: Reply(json=VERTEX_ANSWER)
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"prompt": "a red barn", "n": 3})

    assert response.status_code == 200, response.text
    result = response.json()
    assert [d["b64_json"] for d in result["data"]] == [RED, GREEN]
    assert result["filtered"] == [{"reason": "56562880: the image was filtered for violence."}]
    assert (result["billing"]["images"], result["billing"]["credits"]) == (2, "16")
    await assert_nothing_charged(gw, account_id, "84")  # 100 - 2 × 8: the third image is not billed


async def test_everything_filtered_is_moderation_blocked_and_free(gw: Harness, upstream: FakeUpstream) -> None:
    await imagen_channel(gw, upstream)
    upstream.respond = lambda _r: Reply(json={})
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"prompt": "something unsafe", "n": 4})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("moderation_blocked", "image_generation_user_error")
    await assert_nothing_charged(gw, account_id, "100")


CANARY = "AIza-CANARY-must-never-leak-31337"


@pytest.mark.parametrize(
    ("status", "should_retry_header", "says"),
    [
        (400, "false", "rejected the request (400)"),
        (401, "false", "credentials"),
        (403, "false", "credentials"),
        (404, "false", "retired"),
        (500, None, "failed (500)"),
        (503, None, "failed (503)"),
    ],
)
async def test_upstream_errors_become_502_without_charge_or_leaked_key(
    gw: Harness, upstream: FakeUpstream, status: int, should_retry_header: str | None, says: str
) -> None:
    await imagen_channel(gw, upstream, auth={"api_key": CANARY, "style": "x-goog-api-key"})
    upstream.respond = lambda r: Reply(
        status,
        {"error": {"code": status, "message": f"API key {r.headers.get('x-goog-api-key')} refused", "status": "X"}},
    )
    account_id, key = await gw.account_with_key(credits=50)

    response = await gw.generate(key, {"prompt": "x"})

    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert says in error["message"]
    assert "[redacted]" in error["message"]
    assert CANARY not in response.text
    assert response.headers.get("x-should-retry") == should_retry_header
    assert len(upstream.requests) == 1
    await assert_nothing_charged(gw, account_id, "50")


async def test_retryable_error_fails_over_to_the_next_imagen_channel(gw: Harness, upstream: FakeUpstream) -> None:
    await imagen_channel(gw, upstream, path="/primary/v1beta", priority=10)
    await imagen_channel(gw, upstream, path="/backup/v1beta", only=False)
    upstream.respond = lambda r: (
        Reply(503, {"error": {"code": 503, "message": "overloaded"}})
        if r.path.startswith("/primary")
        else answer(image(RED))
    )
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"prompt": "x"})

    assert response.status_code == 200, response.text
    assert [r.path.split("/")[1] for r in upstream.requests] == ["primary", "backup"]
    assert response.json()["billing"]["credits"] == "8"
    assert (await gw.account(account_id))["balance"] == "92"
    assert await gw.ledger_problems() == []


async def test_slow_upstream_is_504_and_releases_the_hold(gw: Harness, upstream: FakeUpstream) -> None:
    await imagen_channel(gw, upstream, timeout_s=0.3)
    upstream.respond = lambda _r: Reply(json={"predictions": [image(RED)]}, delay_s=1.0)
    account_id, key = await gw.account_with_key(credits=30)

    response = await gw.generate(key, {"prompt": "x"})

    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "upstream_timeout"
    await assert_nothing_charged(gw, account_id, "30")


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=b"<html>upstream proxy error</html>"),
        Reply(json={"predictions": {"bytesBase64Encoded": "AAAA"}}),
        Reply(json={"predictions": [{"mimeType": "image/png"}]}),
    ],
)
async def test_malformed_success_answer_is_502(gw: Harness, upstream: FakeUpstream, reply: Reply) -> None:
    await imagen_channel(gw, upstream)
    upstream.respond = lambda _r: reply
    account_id, key = await gw.account_with_key(credits=30)

    response = await gw.generate(key, {"prompt": "x"})

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_error"
    await assert_nothing_charged(gw, account_id, "30")


@pytest.mark.parametrize(
    ("fields", "param", "upstream_model"),
    [
        ({"seed": 42}, "seed", STANDARD),
        ({"negative_prompt": "people"}, "negative_prompt", STANDARD),
        ({"image_size": "2K"}, "image_size", FAST),
    ],
)
async def test_parameters_the_target_cannot_honour_are_refused_before_any_call(
    gw: Harness, upstream: FakeUpstream, fields: dict[str, Any], param: str, upstream_model: str
) -> None:
    await imagen_channel(gw, upstream, upstream_model=upstream_model)
    account_id, key = await gw.account_with_key(credits=30)

    response = await gw.generate(key, {"prompt": "x", "model": "imagen4", **fields})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("unsupported_parameter", param)
    assert upstream.requests == []
    await assert_nothing_charged(gw, account_id, "30")


async def test_vertex_express_channel_sends_seed_with_watermark_off(gw: Harness, upstream: FakeUpstream) -> None:
    await imagen_channel(gw, upstream, path="/v1beta1/publishers/google")
    upstream.respond = lambda _r: answer(image(RED))
    _, key = await gw.account_with_key()

    response = await gw.generate(key, {"prompt": "x", "seed": 42, "negative_prompt": "fog"})

    assert response.status_code == 200, response.text
    (sent,) = upstream.requests
    assert sent.path == f"/v1beta1/publishers/google/models/{STANDARD}:predict"
    assert sent.headers["x-goog-api-key"] == KEY
    parameters = sent.json["parameters"]
    assert (parameters["seed"], parameters["addWatermark"], parameters["negativePrompt"]) == (42, False, "fog")


@cache
def rsa_private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def service_account_file(tmp_path: Path, token_uri: str) -> str:
    path = tmp_path / "service-account.json"
    info = {
        "type": "service_account",
        "project_id": "proj",
        "private_key_id": "key-1",
        "private_key": rsa_private_key_pem(),
        "client_email": "gateway@proj.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info))
    return str(path)


async def test_vertex_service_account_uses_one_cached_oauth_token(
    gw: Harness, upstream: FakeUpstream, tmp_path: Path
) -> None:
    key_file = service_account_file(tmp_path, upstream.url + "/token")
    await imagen_channel(
        gw,
        upstream,
        path="/v1/projects/proj/locations/us-central1/publishers/google",
        auth={"service_account_file": key_file},
    )
    upstream.respond = lambda r: (
        Reply(json={"access_token": "tok-123", "expires_in": 3600, "token_type": "Bearer"})
        if r.path == "/token"
        else answer(image(RED))
    )
    account_id, key = await gw.account_with_key(credits=100)

    for _ in range(2):
        response = await gw.generate(key, {"prompt": "x", "seed": 5})
        assert response.status_code == 200, response.text

    assert upstream.paths().count("/token") == 1
    predicts = [r for r in upstream.requests if r.path.endswith(":predict")]
    assert len(predicts) == 2
    assert all(r.headers["authorization"] == "Bearer tok-123" for r in predicts)
    assert predicts[0].json["parameters"]["addWatermark"] is False
    assert (await gw.account(account_id))["balance"] == "84"
    assert await gw.ledger_problems() == []


def test_an_empty_base_url_means_the_gemini_api_with_googles_key_header() -> None:
    spec = channel_spec("")
    assert predict_url(google_base(spec), STANDARD) == (
        "https://generativelanguage.googleapis.com/v1beta/models/imagen-4.0-generate-001:predict"
    )
    assert default_key_style(google_base(spec)) == "x-goog-api-key"
    assert not is_vertex(spec)
