"""The unified images route: what a caller gets back and what it pays."""

from __future__ import annotations

from decimal import Decimal

import httpx2
import pytest
from openai import AsyncOpenAI

from tests.support.harness import Harness
from tests.support.images import decode_image


async def test_openai_sdk_gets_real_pngs_and_exact_charge(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    transport = httpx2.ASGITransport(app=gw.app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        client = AsyncOpenAI(api_key=key, base_url="http://gateway.test/v1", http_client=http, max_retries=0)
        result = await client.images.generate(
            model="imagen4", prompt="a lighthouse at dusk", n=2, response_format="b64_json"
        )
    assert result.data is not None and len(result.data) == 2
    for item in result.data:
        assert item.b64_json is not None
        image = decode_image(item.b64_json)
        assert image.format == "PNG"
        assert image.size == (1024, 1024)
    account = await gw.account(account_id)
    assert account["balance"] == "84"  # 2 images × 8 credits
    assert account["held"] == "0"
    assert await gw.ledger_problems() == []


async def test_billing_block_applies_model_and_channel_multipliers(gw: Harness) -> None:
    model = (await gw.admin("GET", "/admin/models")).json()["data"]
    imagen4 = next(m for m in model if m["id"] == "imagen4")
    imagen4["multiplier"] = "1.5"
    assert (await gw.admin("PUT", "/admin/models/imagen4", json=imagen4)).status_code == 200
    local = await gw.local_channel()
    patched = await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"multiplier": 0.3333})
    assert patched.status_code == 200, patched.text
    account_id, key = await gw.account_with_key(credits=50)

    response = await gw.generate(key, {"prompt": "a red fox", "model": "imagen-4.0-generate-001", "num_images": 3})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "imagen4"
    # 8 × 1.5 × 0.3333 × 3 = 11.9988 exactly
    assert body["billing"] == {
        "images": 3,
        "unit_credits": "8",
        "model_multiplier": "1.5",
        "channel_multiplier": "0.3333",
        "credits": "11.9988",
        "balance": "38.0012",
    }
    assert (await gw.account(account_id))["balance"] == "38.0012"
    assert body["id"].startswith("req_")
    assert response.headers["x-request-id"]
    assert await gw.ledger_problems() == []


async def test_size_jpeg_and_seed_are_honoured(gw: Harness) -> None:
    _, key = await gw.account_with_key()
    body = {"prompt": "a bridge", "size": "1408x768", "output_format": "jpeg", "seed": 42, "model": "imagen4"}
    first = await gw.generate(key, body)
    second = await gw.generate(key, body)
    assert first.status_code == 200, first.text
    item = first.json()["data"][0]
    assert item["mime_type"] == "image/jpeg"
    image = decode_image(item["b64_json"])
    assert (image.format, image.size) == ("JPEG", (1408, 768))
    assert item["b64_json"] == second.json()["data"][0]["b64_json"]  # same prompt and seed, same image


async def test_2k_portrait_dimensions(gw: Harness) -> None:
    _, key = await gw.account_with_key()
    response = await gw.generate(key, {"prompt": "a tower", "aspect_ratio": "9:16", "image_size": "2k"})
    assert response.status_code == 200, response.text
    assert decode_image(response.json()["data"][0]["b64_json"]).size == (1536, 2816)


async def test_api_v1_alias_and_neutral_openai_fields(gw: Harness) -> None:
    _, key = await gw.account_with_key()
    body = {"prompt": "x", "quality": "auto", "background": "auto", "moderation": "auto", "stream": False}
    response = await gw.generate(key, body, path="/api/v1/images/generations")
    assert response.status_code == 200, response.text


async def test_models_and_account_routes(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=10, models=["imagen4", "imagen4-fast"])
    headers = {"authorization": f"Bearer {key}"}
    models = (await gw.http.get("/v1/models", headers=headers)).json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["imagen4", "imagen4-fast"]
    fast = models["data"][1]
    assert fast["credits_per_image"] == "4"
    assert fast["aliases"] == ["imagen-4.0-fast-generate-001"]
    assert fast["placeholder"] is True
    info = (await gw.http.get("/v1/account", headers=headers)).json()
    assert info["account"]["id"] == account_id
    assert (info["balance"], info["held"], info["available"]) == ("10", "0", "10")
    assert key.startswith(info["key"]["prefix"])


async def test_key_limited_to_models_gets_403(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(models=["imagen4-fast"])
    response = await gw.generate(key, {"prompt": "x", "model": "imagen4"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_allowed"
    assert (await gw.account(account_id))["balance"] == "1000"


async def test_insufficient_credits_is_402_and_holds_nothing(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=7)
    response = await gw.generate(key, {"prompt": "x", "model": "imagen4"})
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_credits"
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == ("7", "0")


async def test_disabled_channel_gives_503_without_charge(gw: Harness) -> None:
    local = await gw.local_channel()
    await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
    account_id, key = await gw.account_with_key(credits=10)
    response = await gw.generate(key, {"prompt": "x"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_channel_available"
    assert (await gw.account(account_id))["balance"] == "10"


async def test_usage_record_freezes_what_was_applied(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    await gw.generate(key, {"prompt": "x", "n": 2, "user": "end-user-7", "metadata": {"team": "ads"}})
    local = await gw.local_channel()
    await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"multiplier": "2"})
    [record] = await gw.usage_rows()  # parsed as CSV: the metadata cell holds commas
    assert record["status"] == "succeeded"
    assert (record["images_requested"], record["images_delivered"]) == ("2", "2")
    assert (record["unit_credits"], record["model_multiplier"], record["channel_multiplier"]) == ("8", "1", "1")
    assert record["credits"] == "16"  # the later multiplier change does not rewrite history
    assert record["channel"] == "local" and record["provider"] == "local"
    assert record["user"] == "end-user-7"
    assert record["account_id"] == account_id


@pytest.mark.parametrize("credits", ["0.0001", "12.3456"])
async def test_fractional_grants_are_exact(gw: Harness, credits: str) -> None:
    account = await gw.create_account(credits=credits)
    assert account["balance"] == credits
    assert Decimal(account["available"]) == Decimal(credits)
