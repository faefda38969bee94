"""The Google-native `:generateContent` relay: google-genai's `generate_content` with an image model
works pointed at the gateway, through the same channels, billing and errors as every route."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.support.fakes.upstream import FakeUpstream, Received, Reply, tiny_png_b64
from tests.support.harness import Harness
from tests.support.images import decode_image
from tests.test_contract_bodies import Contract

PLACEHOLDER = "x-gateway-placeholder"
KITE = {"contents": [{"role": "user", "parts": [{"text": "a kite"}]}]}


@asynccontextmanager
async def sdk(gw: Harness, key: str, *, vertex: bool = False) -> AsyncIterator[genai.Client]:
    """google-genai as a caller configures it, its HTTP going straight into the gateway app."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.app)) as http:
        yield genai.Client(
            vertexai=vertex,
            api_key=key,
            http_options=types.HttpOptions(base_url="http://gateway.test", httpx_async_client=http),
        )


def gemini_answer(*parts: dict[str, Any]) -> dict[str, Any]:
    """A gemini-image upstream's answer, in Gemini's own format."""
    return {
        "candidates": [{"content": {"role": "model", "parts": list(parts)}, "finishReason": "STOP", "index": 0}],
        "modelVersion": "gemini-3.1-flash-image",
    }


def image_part(colour: tuple[int, int, int] = (200, 30, 30)) -> dict[str, Any]:
    return {"inlineData": {"mimeType": "image/png", "data": tiny_png_b64(colour)}}


async def gemini_channel(gw: Harness, upstream: FakeUpstream, **fields: Any) -> dict[str, Any]:
    return await gw.add_channel(
        only=True,
        name="gemini",
        provider="gemini-image",
        base_url=upstream.url + "/v1beta",
        auth={"api_key": "g-upstream-key"},
        models={"gemini-3.1-flash-image": "gemini-3.1-flash-image-preview", "gemini-3-pro-image": "gemini-3-pro-image"},
        **fields,
    )


async def test_sdk_generate_content_returns_images_billed_per_image(gw: Harness) -> None:
    """The local channel serves the catalog's Gemini model: a placeholder image, marked, and billed."""
    account_id, key = await gw.account_with_key(credits=100)
    async with sdk(gw, key) as client:
        response = await client.aio.models.generate_content(
            model="gemini-3.1-flash-image",
            contents="a kite",
            config=types.GenerateContentConfig(
                response_modalities=["IMAGE"], image_config=types.ImageConfig(aspect_ratio="16:9")
            ),
        )
    assert response.parts is not None
    images = [part.inline_data for part in response.parts if part.inline_data is not None]
    assert len(images) == 1 and images[0].mime_type == "image/png" and images[0].data is not None
    assert decode_image(base64.b64encode(images[0].data).decode()).size == (1408, 768)  # 16:9 at 1K
    assert response.model_version == "gemini-3.1-flash-image"
    assert response.response_id is not None and response.response_id.startswith("req_")
    assert response.sdk_http_response is not None and response.sdk_http_response.headers is not None
    headers = response.sdk_http_response.headers
    assert headers["x-gateway-credits"] == "8"
    assert headers[PLACEHOLDER] == "true"  # the local channel says so, in a header only
    assert (await gw.account(account_id))["balance"] == "92"
    [row] = await gw.usage_rows()
    assert row["endpoint"] == "/v1/models/{model}:generateContent"  # where the SDK sends it
    assert (row["model"], row["images_delivered"], row["credits"]) == ("gemini-3.1-flash-image", "1", "8")


async def test_candidate_count_is_the_number_of_images_and_alias_names_the_model(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    body = {**KITE, "generationConfig": {"candidateCount": 3, "imageConfig": {"imageSize": "2K"}}}
    response = await gw.http.post(
        "/v1beta/models/gemini-3-pro-image-preview:generateContent", json=body, headers={"x-goog-api-key": key}
    )
    assert response.status_code == 200, response.text
    candidates = response.json()["candidates"]
    assert [c["index"] for c in candidates] == [0, 1, 2]
    for candidate in candidates:
        assert candidate["finishReason"] == "STOP"
        [part] = candidate["content"]["parts"]
        assert decode_image(part["inlineData"]["data"]).size == (2048, 2048)
    assert response.json()["modelVersion"] == "gemini-3-pro-image"
    assert response.headers["x-gateway-credits"] == "36"  # 3 × 12
    assert (await gw.account(account_id))["balance"] == "64"


async def test_served_by_a_gemini_channel_with_text_passed_through_on_vertex_paths(
    gw: Harness, upstream: FakeUpstream
) -> None:
    await gemini_channel(gw, upstream)
    upstream.respond = lambda _r: Reply(json=gemini_answer({"text": "Here is your kite."}, image_part()))
    account_id, key = await gw.account_with_key(credits=100)
    async with sdk(gw, key, vertex=True) as client:
        response = await client.aio.models.generate_content(
            model="gemini-3.1-flash-image-preview",
            contents="a kite",
            config=types.GenerateContentConfig(
                response_modalities=["TEXT", "IMAGE"],
                image_config=types.ImageConfig(aspect_ratio="3:4", image_size="2K"),
            ),
        )
    assert response.parts is not None
    assert response.parts[0].text == "Here is your kite."
    assert response.parts[1].inline_data is not None
    assert response.parts[1].inline_data.data == base64.b64decode(tiny_png_b64())
    assert response.sdk_http_response is not None and response.sdk_http_response.headers is not None
    assert PLACEHOLDER not in response.sdk_http_response.headers  # a real channel answered
    [sent] = upstream.requests
    assert sent.path == "/v1beta/models/gemini-3.1-flash-image-preview:generateContent"
    assert sent.headers["x-goog-api-key"] == "g-upstream-key"  # the channel's key, never the caller's
    assert sent.json["contents"] == [{"role": "user", "parts": [{"text": "a kite"}]}]
    assert sent.json["generationConfig"]["imageConfig"] == {"aspectRatio": "3:4", "imageSize": "2K"}
    assert (await gw.account(account_id))["balance"] == "92"

    # The project-scoped Vertex shape, with the key in the query string.
    path = "/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-3-pro-image:generateContent"
    upstream.respond = lambda _r: Reply(json=gemini_answer(image_part()))
    scoped = await gw.http.post(path, json=KITE, params={"key": key})
    assert scoped.status_code == 200, scoped.text
    assert scoped.json()["candidates"][0]["content"]["parts"] == [image_part()]
    assert (await gw.account(account_id))["balance"] == "80"


async def test_withheld_images_are_candidates_and_not_charged(gw: Harness, upstream: FakeUpstream) -> None:
    await gemini_channel(gw, upstream)
    calls = {"n": 0}

    def one_blocked(_r: Received) -> Reply:
        calls["n"] += 1
        if calls["n"] == 1:
            return Reply(json={"promptFeedback": {"blockReason": "SAFETY"}})
        return Reply(json=gemini_answer(image_part()))

    upstream.respond = one_blocked
    account_id, key = await gw.account_with_key(credits=100)
    body = {**KITE, "generationConfig": {"candidateCount": 2}}
    partly = await gw.http.post("/v1beta/models/gemini-3.1-flash-image:generateContent", json=body, params={"key": key})
    assert partly.status_code == 200, partly.text
    first, second = partly.json()["candidates"]
    assert first["content"]["parts"] == [image_part()] and first["finishReason"] == "STOP"
    assert second == {"finishReason": "IMAGE_SAFETY", "finishMessage": "SAFETY", "index": 1}
    assert partly.headers["x-gateway-credits"] == "8"  # one image delivered, one billed

    upstream.respond = lambda _r: Reply(json={"promptFeedback": {"blockReason": "SAFETY"}})
    blocked = await gw.http.post(
        "/v1beta/models/gemini-3.1-flash-image-preview:generateContent", json=KITE, params={"key": key}
    )
    assert blocked.status_code == 200, blocked.text
    assert [c["finishReason"] for c in blocked.json()["candidates"]] == ["IMAGE_SAFETY"]
    assert blocked.json()["modelVersion"] == "gemini-3.1-flash-image"
    assert "content" not in blocked.json()["candidates"][0]
    assert blocked.headers["x-gateway-credits"] == "0"
    assert (await gw.account(account_id))["balance"] == "92"
    assert await gw.ledger_problems() == []


async def test_a_model_that_is_not_an_image_model_is_404_in_googles_shape(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    async with sdk(gw, key) as client:
        with pytest.raises(genai_errors.ClientError) as raised:
            await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hello")
    assert raised.value.code == 404
    assert raised.value.status == "NOT_FOUND"
    assert "gemini-2.5-flash" in (raised.value.message or "")
    raw = await gw.http.post("/v1beta/models/gemini-2.5-flash:generateContent", json=KITE, params={"key": key})
    assert raw.status_code == 404
    assert set(raw.json()["error"]) == {"code", "message", "status"}
    assert (await gw.account(account_id))["balance"] == "100"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "contents"),
        ({"contents": []}, "contents"),
        ({"contents": [{"role": "user", "parts": [{"text": "  "}]}]}, "prompt"),
        ({**KITE, "generationConfig": {"imageConfig": {"aspectRatio": "21:9"}}}, "aspectRatio"),
        ({**KITE, "generationConfig": {"imageConfig": {"imageSize": "4K"}}}, "imageSize"),
        ({**KITE, "generationConfig": {"responseModalities": ["TEXT"]}}, "responseModalities"),
        ({**KITE, "generationConfig": {"candidateCount": 0}}, "candidateCount"),
        ({**KITE, "generationConfig": {"candidateCount": 5}}, "n must be between 1 and 4"),
        ({**KITE, "generationConfig": {"imageConfig": {"personGeneration": "EVERYONE"}}}, "personGeneration"),
        ({**KITE, "generationConfig": {"imageConfig": {"mood": "sunny"}}}, "mood"),
        ("not an object", "JSON object"),
    ],
)
async def test_bad_bodies_are_400_in_googles_shape(gw: Harness, body: Any, fragment: str) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    response = await gw.http.post(
        "/v1beta/models/gemini-3.1-flash-image:generateContent", json=body, headers={"x-goog-api-key": key}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "status"}
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert fragment in error["message"]
    assert (await gw.account(account_id))["balance"] == "100"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (
            {
                "contents": [
                    {"parts": [{"text": "make it red"}, {"inlineData": {"mimeType": "image/png", "data": "AA=="}}]}
                ]
            },
            "image input",
        ),
        (
            {"contents": [{"parts": [{"fileData": {"fileUri": "gs://b/cat.png", "mimeType": "image/png"}}]}]},
            "fileData",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "a kite"}]},
                    {"role": "model", "parts": [{"text": "ok"}]},
                    {"role": "user", "parts": [{"text": "redder"}]},
                ]
            },
            "multi-turn",
        ),
        ({**KITE, "generationConfig": {"temperature": 0.2}}, "generationConfig.temperature"),
        ({**KITE, "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}, "generationConfig.thinkingConfig"),
        ({**KITE, "tools": [{"googleSearch": {}}]}, "tools"),
        ({**KITE, "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}]}, "safety"),
        ({**KITE, "systemInstruction": {"parts": [{"text": "be nice"}]}}, "systemInstruction"),
        (
            {**KITE, "generationConfig": {"imageConfig": {"imageOutputOptions": {"compressionQuality": 75}}}},
            "compressionQuality",
        ),
    ],
)
async def test_what_the_gateway_cannot_honour_is_refused_before_any_hold(
    gw: Harness, upstream: FakeUpstream, body: dict[str, Any], named: str
) -> None:
    await gemini_channel(gw, upstream)
    upstream.respond = lambda _r: Reply(json=gemini_answer(image_part()))
    account_id, key = await gw.account_with_key(credits=100)
    response = await gw.http.post(
        "/v1beta/models/gemini-3.1-flash-image:generateContent", json=body, headers={"x-goog-api-key": key}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert named in response.json()["error"]["message"]
    assert upstream.requests == []
    assert (await gw.account(account_id))["balance"] == "100"
    assert await gw.usage_rows() == []  # refused at the edge: no hold, no request record


async def test_a_catalog_parameter_the_channel_cannot_honour_is_refused(gw: Harness, upstream: FakeUpstream) -> None:
    """personGeneration is a Vertex-only Gemini field: a Gemini API channel cannot honour it."""
    await gemini_channel(gw, upstream)
    account_id, key = await gw.account_with_key(credits=100)
    body = {**KITE, "generationConfig": {"imageConfig": {"personGeneration": "ALLOW_ADULT"}}}
    response = await gw.http.post(
        "/v1beta/models/gemini-3.1-flash-image:generateContent", json=body, headers={"x-goog-api-key": key}
    )
    assert response.status_code == 400, response.text
    assert "person_generation" in response.json()["error"]["message"]
    assert upstream.requests == []
    assert (await gw.account(account_id))["balance"] == "100"


async def test_seed_is_relayed_as_sent_and_auth_errors_are_googles(gw: Harness, upstream: FakeUpstream) -> None:
    await gemini_channel(gw, upstream)
    upstream.respond = lambda _r: Reply(json=gemini_answer(image_part()))
    _, key = await gw.account_with_key(credits=100)
    body = {**KITE, "generationConfig": {"seed": -7}}
    response = await gw.http.post(
        "/v1beta/models/gemini-3.1-flash-image:generateContent", json=body, headers={"authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    assert upstream.requests[0].json["generationConfig"]["seed"] == -7

    missing = await gw.http.post("/v1beta/models/gemini-3.1-flash-image:generateContent", json=KITE)
    assert missing.status_code == 401
    assert missing.json()["error"]["status"] == "UNAUTHENTICATED"
    wrong_version = await gw.http.post(
        "/v2/publishers/google/models/gemini-3.1-flash-image:generateContent", json=KITE, params={"key": key}
    )
    assert wrong_version.status_code == 404
    assert wrong_version.json()["error"]["status"] == "NOT_FOUND"


async def test_idempotent_replay_renders_the_same_answer_without_a_second_charge(
    gw: Harness, upstream: FakeUpstream
) -> None:
    await gemini_channel(gw, upstream)
    upstream.respond = lambda _r: Reply(json=gemini_answer({"text": "A kite."}, image_part()))
    account_id, key = await gw.account_with_key(credits=100)
    headers = {"x-goog-api-key": key, "idempotency-key": "kite-1"}
    path = "/v1beta/models/gemini-3.1-flash-image:generateContent"
    first = await gw.http.post(path, json=KITE, headers=headers)
    again = await gw.http.post(path, json=KITE, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert first.json()["candidates"][0]["content"]["parts"][0] == {"text": "A kite."}
    assert len(upstream.requests) == 1
    assert (await gw.account(account_id))["balance"] == "92"

    # Live, replayed, withheld and error bodies are all the ones /openapi.json promises, with no
    # undocumented field.
    contract = Contract((await gw.http.get("/openapi.json")).json())
    template = "/v1beta/models/{model}:generateContent"
    contract.check(first, "post", template)
    contract.check(again, "post", template)
    upstream.respond = lambda _r: Reply(json={"promptFeedback": {"blockReason": "SAFETY"}})
    contract.check(await gw.http.post(path, json=KITE, headers={"x-goog-api-key": key}), "post", template)
    contract.check(await gw.http.post(path, json={}, headers={"x-goog-api-key": key}), "post", template)


async def test_openapi_documents_the_generate_content_routes(gw: Harness) -> None:
    document = (await gw.http.get("/openapi.json")).json()
    route = document["paths"]["/v1beta/models/{model}:generateContent"]["post"]
    assert "generate_content" in route["description"]
    body_ref = route["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body_ref == "#/components/schemas/GenerateContentBody"
    assert "contents" in document["components"]["schemas"]["GenerateContentBody"]["properties"]
    vertex = "/{version}/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent"
    assert {p["name"] for p in document["paths"][vertex]["post"]["parameters"]} >= {"version", "project", "location"}
