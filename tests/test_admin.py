"""The operator's admin API: accounts, keys, models, channels, usage and the ledger."""

from __future__ import annotations

import csv
import io

import pytest

from app.settings import Settings
from tests.support.harness import Harness, running_app


async def test_admin_disabled_without_token(settings: Settings) -> None:
    async with running_app(settings.model_copy(update={"admin_token": None})) as gw:
        response = await gw.admin("GET", "/admin/accounts")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_disabled"


async def test_wrong_admin_token_is_401(gw: Harness) -> None:
    response = await gw.http.get("/admin/accounts", headers={"authorization": "Bearer nope"})
    assert response.status_code == 401


async def test_accounts_and_credit_adjustments(gw: Harness) -> None:
    account = await gw.create_account(credits=10, name="ads")
    assert account["webhook_secret"].startswith("whsec_")
    granted = await gw.admin("POST", f"/admin/accounts/{account['id']}/credits", json={"amount": 2.5, "note": "bonus"})
    assert granted.json()["balance"] == "12.5"
    too_much = await gw.admin("POST", f"/admin/accounts/{account['id']}/credits", json={"amount": "-13", "note": "x"})
    assert too_much.status_code == 400
    assert too_much.json()["error"]["param"] == "amount"
    taken = await gw.admin("POST", f"/admin/accounts/{account['id']}/credits", json={"amount": "-12.5"})
    assert taken.json()["available"] == "0"
    listed = (await gw.admin("GET", "/admin/accounts")).json()["data"]
    assert [a["name"] for a in listed] == ["ads"]
    assert (await gw.admin("GET", "/admin/accounts/acc_missing")).status_code == 404
    assert await gw.ledger_problems() == []


@pytest.mark.parametrize("amount", ["1.00001", "abc", "NaN", True, None])
async def test_bad_amounts_are_refused(gw: Harness, amount: object) -> None:
    account = await gw.create_account(credits=1)
    response = await gw.admin("POST", f"/admin/accounts/{account['id']}/credits", json={"amount": amount})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "amount"


async def test_key_is_shown_once_and_stored_hashed(gw: Harness) -> None:
    account = await gw.create_account()
    created = (await gw.admin("POST", "/admin/keys", json={"account_id": account["id"], "name": "ci"})).json()
    assert created["key"].startswith("igw_") and len(created["key"]) >= 40
    listed = (await gw.admin("GET", "/admin/keys")).text
    assert created["key"] not in listed
    assert created["prefix"] in listed
    missing = await gw.admin("POST", "/admin/keys", json={"account_id": "acc_nope"})
    assert missing.status_code == 404


async def test_channel_secrets_are_write_only(gw: Harness) -> None:
    canary = "sk-canary-5f1e2d3c4b5a69788796a5b4"
    created = await gw.admin(
        "POST",
        "/admin/channels",
        json={"name": "relay", "provider": "local", "auth": {"api_key": canary}, "models": {"imagen4": "imagen4"}},
    )
    assert created.status_code == 201, created.text
    channel = created.json()
    assert channel["auth"] == {"api_key_set": True}
    # Sending back what GET returned keeps the secret.
    patched = await gw.admin("PATCH", f"/admin/channels/{channel['id']}", json={**channel, "priority": 5})
    assert patched.status_code == 200, patched.text
    assert patched.json()["auth"]["api_key_set"] is True
    assert patched.json()["priority"] == 5
    everything = (await gw.admin("GET", "/admin/channels")).text
    assert canary not in everything
    duplicate = await gw.admin("POST", "/admin/channels", json={"name": "relay", "provider": "local"})
    assert duplicate.status_code == 409
    unknown = await gw.admin("POST", "/admin/channels", json={"name": "x", "provider": "dall-e"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["param"] == "provider"
    assert (await gw.admin("DELETE", f"/admin/channels/{channel['id']}")).status_code == 204


async def test_new_model_is_usable_at_once(gw: Harness) -> None:
    response = await gw.admin(
        "PUT",
        "/admin/models/flux-pro",
        json={"credits_per_image": "2.5", "aliases": ["flux"], "image_sizes": ["1K"], "parameters": ["seed"]},
    )
    assert response.status_code == 201, response.text
    _, key = await gw.account_with_key(credits=10)
    generated = await gw.generate(key, {"prompt": "x", "model": "flux", "n": 2})
    assert generated.status_code == 200, generated.text
    assert generated.json()["billing"]["credits"] == "5"
    clash = await gw.admin("PUT", "/admin/models/other", json={"credits_per_image": 1, "aliases": ["flux"]})
    assert clash.status_code == 409


async def test_usage_export_has_the_contract_columns(gw: Harness) -> None:
    _, key = await gw.account_with_key()
    for _ in range(3):
        assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
    response = await gw.admin("GET", "/admin/usage/export")
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == [
        "request_id",
        "created_at",
        "completed_at",
        "account_id",
        "key_id",
        "endpoint",
        "model",
        "upstream_model",
        "channel",
        "provider",
        "status",
        "images_requested",
        "images_delivered",
        "unit_credits",
        "model_multiplier",
        "channel_multiplier",
        "credits",
        "attempts",
        "latency_ms",
        "error_code",
        "user",
        "metadata",
        "client_request_id",
    ]
    assert len(rows) == 3
    assert {r["endpoint"] for r in rows} == {"/v1/images/generations"}


async def test_openapi_describes_the_routes(gw: Harness) -> None:
    schema = (await gw.http.get("/openapi.json")).json()
    paths = schema["paths"]
    for path in ("/v1/images/generations", "/v1/models", "/v1/account", "/admin/accounts", "/admin/channels"):
        assert path in paths
    body = schema["components"]["schemas"]["ImagesGenerationBody"]
    assert {"prompt", "n", "num_images", "size", "async"} <= set(body["properties"])


async def test_health_and_readiness(gw: Harness) -> None:
    assert (await gw.http.get("/healthz")).json() == {"status": "ok"}
    ready = await gw.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"


async def test_ledger_shows_grants_with_note_and_actor_and_charges(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=50)
    await gw.admin(
        "POST", f"/admin/accounts/{account_id}/credits", json={"amount": "-5", "note": "refund", "actor": "ana"}
    )
    assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
    page = (await gw.admin("GET", f"/admin/accounts/{account_id}/ledger")).json()
    charge, adjustment, grant = page["data"]
    assert (charge["kind"], charge["amount"], charge["balance_after"]) == ("charge", "-8", "37")
    assert charge["request_id"].startswith("req_")
    assert (adjustment["kind"], adjustment["amount"], adjustment["note"], adjustment["actor"]) == (
        "adjustment",
        "-5",
        "refund",
        "root (on behalf of ana)",  # the authenticated caller first: a body cannot name someone else alone
    )
    assert (grant["kind"], grant["amount"], grant["note"], grant["actor"]) == ("grant", "50", "initial credits", "root")
    older = (await gw.admin("GET", f"/admin/accounts/{account_id}/ledger", params={"limit": 1})).json()
    assert older["next_before"] == charge["id"]
