"""Changing a model's price without breaking its clients: PATCH changes only what it is sent, and a
PUT that would replace an existing model with a partial body is refused."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.fakes.channels import ok
from tests.support.fakes.upstream import FakeUpstream
from tests.support.harness import Harness

RELAY_PATH = "/v1beta/models/imagen-4.0-generate-001:predict"  # what the google-genai relay posts


async def _model(gw: Harness, model_id: str) -> dict[str, Any]:
    models = (await gw.admin("GET", "/admin/models")).json()["data"]
    found: dict[str, Any] = next(m for m in models if m["id"] == model_id)
    return found


async def test_the_issue_story_a_price_change_keeps_aliases_sizes_and_parameters(
    gw: Harness, upstream: FakeUpstream
) -> None:
    upstream.respond = ok
    await gw.add_channel(
        only=True,
        name="google-a",
        provider="google-imagen",
        base_url=f"{upstream.url}/v1beta",
        auth={"api_key": "upstream-key", "style": "x-goog-api-key"},
        models={"imagen4": "imagen-4.0-generate-001"},
    )
    before = await _model(gw, "imagen4")

    # What the operator first tried: a PUT with only the price would have replaced the whole model.
    naive = await gw.admin("PUT", "/admin/models/imagen4", json={"credits_per_image": "10", "multiplier": "1.25"})
    assert naive.status_code == 400, naive.text
    message = naive.json()["error"]["message"]
    for field in ("aliases", "image_sizes", "parameters", "aspect_ratios", "max_images"):
        assert field in message
    assert "credits_per_image" not in message.split("missing fields:")[1]
    assert await _model(gw, "imagen4") == before  # nothing was written

    patched = await gw.admin("PATCH", "/admin/models/imagen4", json={"credits_per_image": "10", "multiplier": "1.25"})
    assert patched.status_code == 200, patched.text
    after = patched.json()
    assert (after["credits_per_image"], after["multiplier"]) == ("10", "1.25")
    unchanged = ("aliases", "image_sizes", "parameters", "aspect_ratios", "max_images", "description", "enabled")
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert after["image_sizes"] == ["1K", "2K"] and after["aliases"] == ["imagen-4.0-generate-001"]

    # The google-genai relay still finds the model by its alias, 2K still works, and the new price is charged.
    account_id, key = await gw.account_with_key(credits=100)
    relay = await gw.http.post(
        RELAY_PATH,
        json={"instances": [{"prompt": "a lighthouse"}], "parameters": {"sampleCount": 1, "sampleImageSize": "2K"}},
        headers={"x-goog-api-key": key},
    )
    assert relay.status_code == 200, relay.text
    assert len(relay.json()["predictions"]) == 1
    assert relay.headers["x-gateway-credits"] == "12.5"  # 10 × 1.25
    sent = upstream.requests[-1]
    assert sent.path == "/v1beta/models/imagen-4.0-generate-001:predict"
    assert sent.json["parameters"]["sampleImageSize"] == "2K"

    unified = await gw.generate(key, {"prompt": "a lighthouse", "model": "imagen4", "image_size": "2K"})
    assert unified.status_code == 200, unified.text
    billing = unified.json()["billing"]
    assert (billing["unit_credits"], billing["model_multiplier"], billing["credits"]) == ("10", "1.25", "12.5")
    assert (await gw.account(account_id))["balance"] == "75"
    assert await gw.ledger_problems() == []


async def test_patch_by_alias_and_sending_back_what_get_returned(gw: Harness) -> None:
    by_alias = await gw.admin("PATCH", "/admin/models/imagen-4.0-fast-generate-001", json={"max_images": 2})
    assert by_alias.status_code == 200, by_alias.text
    assert (by_alias.json()["id"], by_alias.json()["max_images"]) == ("imagen4-fast", 2)

    # The GET object, read-only fields (id, object, updated_at) included, with one change.
    model = await _model(gw, "imagen4-ultra")
    resent = await gw.admin("PATCH", "/admin/models/imagen4-ultra", json={**model, "description": "Ultra."})
    assert resent.status_code == 200, resent.text
    assert resent.json()["description"] == "Ultra."
    assert resent.json()["aliases"] == model["aliases"]


async def test_a_patch_that_changes_nothing_writes_nothing(gw: Harness) -> None:
    model = await _model(gw, "imagen4")
    same = await gw.admin("PATCH", "/admin/models/imagen4", json={"credits_per_image": "8.0000", "enabled": True})
    assert same.status_code == 200, same.text
    assert same.json()["updated_at"] == model["updated_at"]


@pytest.mark.parametrize(
    ("body", "status", "param", "fragment"),
    [
        ({}, 400, None, "Nothing to change"),
        ({"id": "imagen4", "updated_at": "2026-01-01T00:00:00Z"}, 400, None, "Nothing to change"),
        ({"aliases": None}, 400, "aliases", "null"),
        ({"credits_per_image": None}, 400, "credits_per_image", "null"),
        ({"price": "9"}, 400, "price", "Unknown parameter"),
        ({"image_sizes": ["3K"]}, 400, "image_sizes", "3K"),
        ({"image_sizes": []}, 400, "image_sizes", "image_sizes"),
        ({"multiplier": "-1"}, 400, "multiplier", "negative"),
        ({"max_images": 11}, 400, "max_images", "max_images"),
        ({"aliases": ["imagen4-fast"]}, 409, "aliases", "imagen4-fast"),
        ({"aliases": ["imagen-4.0-ultra-generate-001"]}, 409, "aliases", "imagen4-ultra"),
    ],
)
async def test_bad_patches_name_the_field_and_change_nothing(
    gw: Harness, body: dict[str, Any], status: int, param: str | None, fragment: str
) -> None:
    before = await _model(gw, "imagen4")
    response = await gw.admin("PATCH", "/admin/models/imagen4", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert fragment in error["message"]
    assert await _model(gw, "imagen4") == before


async def test_patch_of_an_unknown_model_is_404(gw: Harness) -> None:
    response = await gw.admin("PATCH", "/admin/models/imagen-9", json={"credits_per_image": "1"})
    assert response.status_code == 404
    assert "imagen-9" in response.json()["error"]["message"]


async def test_put_creates_with_defaults_and_replaces_only_with_every_field(gw: Harness) -> None:
    created = await gw.admin("PUT", "/admin/models/flux", json={"credits_per_image": "3"})
    assert created.status_code == 201, created.text
    assert created.json()["image_sizes"] == ["1K"] and created.json()["multiplier"] == "1"

    partial = await gw.admin("PUT", "/admin/models/flux", json={"credits_per_image": "4", "aliases": ["flux-1"]})
    assert partial.status_code == 400
    error = partial.json()["error"]
    assert error["param"] == "multiplier"
    assert "missing fields: multiplier, max_images, max_prompt_chars, aspect_ratios, image_sizes" in error["message"]

    full = {**created.json(), "credits_per_image": "4", "aliases": ["flux-1"]}
    replaced = await gw.admin("PUT", "/admin/models/flux", json=full)
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["credits_per_image"], replaced.json()["aliases"]) == ("4", ["flux-1"])
