"""The Google-native `:predict` relay: Imagen clients and SDKs work unchanged against the gateway."""

from __future__ import annotations

import warnings
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import types

from tests.support.fakes.upstream import FakeUpstream, Reply, tiny_png_b64
from tests.support.harness import Harness
from tests.support.images import decode_image

SEED_DOC_BODY = {
    "instances": [{"prompt": "A premium SaaS API gateway product poster, dark background, crisp typography"}],
    "parameters": {"sampleCount": 1, "aspectRatio": "16:9", "imageSize": "2K", "personGeneration": "dont_allow"},
}
PATHS = [
    "/v1beta/models/imagen-4.0-generate-001:predict",
    "/v1/models/imagen4:predict",
    "/v1beta1/publishers/google/models/imagen-4.0-generate-001:predict",
    "/v1/projects/my-proj/locations/us-central1/publishers/google/models/imagen4:predict",
]


def _auth(style: str, key: str) -> dict[str, Any]:
    if style == "bearer":
        return {"headers": {"authorization": f"Bearer {key}"}}
    if style == "x-goog-api-key":
        return {"headers": {"x-goog-api-key": key}}
    return {"params": {"key": key}}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("style", ["bearer", "x-goog-api-key", "query"])
async def test_seed_document_body_on_every_path_and_auth_style(gw: Harness, path: str, style: str) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    response = await gw.http.post(path, json=SEED_DOC_BODY, **_auth(style, key))
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 1
    assert predictions[0]["mimeType"] == "image/png"
    assert decode_image(predictions[0]["bytesBase64Encoded"]).size == (2816, 1536)
    assert response.headers["x-gateway-credits"] == "8"
    assert (await gw.account(account_id))["balance"] == "92"


async def test_sample_count_defaults_to_four_like_google(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    response = await gw.http.post(
        "/v1beta/models/imagen-4.0-fast-generate-001:predict",
        json={"instances": [{"prompt": "a kite"}]},
        headers={"x-goog-api-key": key},
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 4
    assert (await gw.account(account_id))["balance"] == "84"  # 4 × 4 credits


async def test_upper_case_enums_and_jpeg_output(gw: Harness) -> None:
    _, key = await gw.account_with_key()
    body = {
        "instances": [{"prompt": "a kite"}],
        "parameters": {
            "sampleCount": 2,
            "personGeneration": "ALLOW_ADULT",
            "sampleImageSize": "1k",
            "outputOptions": {"mimeType": "image/jpeg"},
        },
    }
    response = await gw.http.post("/v1beta/models/imagen4:predict", json=body, headers={"x-goog-api-key": key})
    assert response.status_code == 200, response.text
    assert [p["mimeType"] for p in response.json()["predictions"]] == ["image/jpeg", "image/jpeg"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"instances": []}, 400, "instances"),
        ({"instances": [{"prompt": ""}]}, 400, "prompt"),
        ({"instances": [{"prompt": "x"}], "parameters": {"sampleCount": 9}}, 400, "sampleCount"),
        ({"instances": [{"prompt": "x"}], "parameters": {"aspectRatio": "2:1"}}, 400, "aspectRatio"),
        ({"instances": [{"prompt": "x"}], "parameters": {"storageUri": "gs://x"}}, 400, "storageUri"),
        ({"instances": [{"prompt": "x"}], "parameters": {"enhancePrompt": True}}, 400, "enhancePrompt"),
        ({"instances": [{"prompt": "x"}], "parameters": {"outputOptions": {"mimeType": "image/gif"}}}, 400, "mimeType"),
    ],
)
async def test_bad_predict_bodies_get_google_shaped_errors(
    gw: Harness, body: dict[str, Any], status: int, fragment: str
) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    response = await gw.http.post("/v1beta/models/imagen4:predict", json=body, headers={"x-goog-api-key": key})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "status"}
    assert error["code"] == status and error["status"] == "INVALID_ARGUMENT"
    assert fragment in error["message"]
    assert (await gw.account(account_id))["balance"] == "100"


async def test_auth_and_model_errors_in_google_shape(gw: Harness) -> None:
    _, key = await gw.account_with_key(credits=1)
    missing = await gw.http.post("/v1beta/models/imagen4:predict", json=SEED_DOC_BODY)
    assert missing.status_code == 401
    assert missing.json()["error"]["status"] == "UNAUTHENTICATED"
    unknown = await gw.http.post("/v1beta/models/imagen-9:predict", json=SEED_DOC_BODY, params={"key": key})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["status"] == "NOT_FOUND"
    broke = await gw.http.post("/v1beta/models/imagen4:predict", json=SEED_DOC_BODY, params={"key": key})
    assert broke.status_code == 402
    assert broke.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


async def test_google_genai_sdk_vertex_express_mode(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.app)) as http:
        client = genai.Client(
            vertexai=True,
            api_key=key,
            http_options=types.HttpOptions(base_url="http://gateway.test", httpx_async_client=http),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # generate_images is deprecated upstream; clients still call it
            result = await client.aio.models.generate_images(
                model="imagen-4.0-generate-001",
                prompt="a paper boat",
                config=types.GenerateImagesConfig(
                    number_of_images=2, aspect_ratio="3:4", image_size="2K", person_generation="DONT_ALLOW"
                ),
            )
    assert result.generated_images is not None and len(result.generated_images) == 2
    for generated in result.generated_images:
        assert generated.image is not None and generated.image.image_bytes is not None
        assert generated.image.mime_type == "image/png"
    assert (await gw.account(account_id))["balance"] == "84"


async def test_relay_served_by_gemini_channel_and_all_filtered_is_empty_object(
    gw: Harness, upstream: FakeUpstream
) -> None:
    await gw.add_channel(
        only=True,
        name="gemini",
        provider="gemini-image",
        base_url=upstream.url + "/v1beta",
        auth={"api_key": "g-key"},
        models={"imagen4": "gemini-3.1-flash-image"},
        multiplier="1.5",
    )
    image = {
        "candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": tiny_png_b64()}}]}}]
    }
    upstream.respond = lambda _r: Reply(json=image)
    account_id, key = await gw.account_with_key(credits=100)
    served = await gw.http.post(
        "/v1beta/models/imagen-4.0-generate-001:predict",
        json={"instances": [{"prompt": "x"}], "parameters": {"sampleCount": 2}},
        headers={"x-goog-api-key": key},
    )
    assert served.status_code == 200, served.text
    assert [p["bytesBase64Encoded"] for p in served.json()["predictions"]] == [tiny_png_b64()] * 2
    assert upstream.paths() == ["/v1beta/models/gemini-3.1-flash-image:generateContent"] * 2
    assert served.headers["x-gateway-credits"] == "24"  # 8 × 1.5 × 2

    blocked = {"promptFeedback": {"blockReason": "SAFETY"}}
    upstream.respond = lambda _r: Reply(json=blocked)
    filtered = await gw.http.post(
        "/v1beta/models/imagen4:predict",
        json={"instances": [{"prompt": "x"}], "parameters": {"sampleCount": 1}},
        headers={"x-goog-api-key": key},
    )
    assert filtered.status_code == 200
    assert filtered.json() == {}
    assert (await gw.account(account_id))["balance"] == "76"
    assert await gw.ledger_problems() == []


async def test_long_vertex_project_names_are_recorded_by_route(gw: Harness) -> None:
    _, key = await gw.account_with_key(credits=100)
    project = "p" * 300
    path = f"/v1/projects/{project}/locations/us-central1/publishers/google/models/imagen4:predict"
    response = await gw.http.post(path, json=SEED_DOC_BODY, headers={"x-goog-api-key": key})
    assert response.status_code == 200, response.text
    export = (await gw.admin("GET", "/admin/usage/export")).text
    assert "/{version}/projects/{project}/locations/{location}/publishers/google/models/{model}:predict" in export
