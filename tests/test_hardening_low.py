"""Issue 12 item 6: the low-severity defects an attack on the running gateway found, one test each."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.settings import Settings
from tests.support.harness import Harness
from tests.support.processes import gateway_command, gateway_env

FORMULA_STARTS = ("=SUM(A1:A9)", "+1+1", "-2+3", "@cmd", "\tcell", "\rcell")


async def test_usage_export_neutralises_formulas_in_caller_and_operator_text(gw: Harness) -> None:
    local = await gw.local_channel()
    renamed = await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"name": "=HYPERLINK(1)"})
    assert renamed.status_code == 200, renamed.text
    _, key = await gw.account_with_key(credits=100)
    for user in FORMULA_STARTS:
        body = {"prompt": "a kite", "model": "imagen4-fast", "user": user, "metadata": {"note": "=1+1"}}
        response = await gw.generate(key, body)
        assert response.status_code == 200, response.text

    rows = await gw.usage_rows()
    assert sorted(row["user"] for row in rows) == sorted(f"'{user}" for user in FORMULA_STARTS)
    for row in rows:
        assert row["channel"] == "'=HYPERLINK(1)"
        assert row["metadata"] == '{"note":"=1+1"}'  # JSON starts with "{": nothing to neutralise
        # Numbers the gateway writes itself stay numbers a spreadsheet can add up.
        assert (row["credits"], row["unit_credits"], row["images_delivered"]) == ("4", "4", "1")


@pytest.mark.parametrize("expires", ["²", "١٢٣٤٥٦٧٨٩٠", "9" * 5000, "1e10", " 1", "-1"])
async def test_a_malformed_expires_is_a_403_like_any_bad_signature(gw: Harness, expires: str) -> None:
    response = await gw.http.get("/v1/files/file_x", params={"expires": expires, "sig": "abc"})
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "invalid_signature"


async def test_a_non_ascii_signature_is_a_403(gw: Harness) -> None:
    response = await gw.http.get("/v1/files/file_x", params={"expires": "99999999999", "sig": "é"})
    assert response.status_code == 403, response.text


@pytest.mark.parametrize("path", ["/v1/images/generations", "/v1beta/models/imagen4:predict"])
async def test_an_idempotent_replay_applies_the_replaying_keys_model_allow_list(gw: Harness, path: str) -> None:
    account_id, unrestricted = await gw.account_with_key(credits=100)
    restricted = await gw.create_key(account_id, models=["imagen4-fast"])
    allowed = await gw.create_key(account_id, models=["imagen4"])
    body: dict[str, Any] = {"prompt": "a kite", "model": "imagen4"}
    if path.endswith(":predict"):
        body = {"instances": [{"prompt": "a kite"}], "parameters": {"sampleCount": 1}}

    def headers(key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}", "idempotency-key": "order-1"}

    first = await gw.http.post(path, json=body, headers=headers(unrestricted))
    assert first.status_code == 200, first.text
    fresh = await gw.http.post(path, json=body, headers={"authorization": f"Bearer {restricted}"})
    assert fresh.status_code == 403, fresh.text

    replay = await gw.http.post(path, json=body, headers=headers(restricted))
    assert replay.status_code == 403, replay.text
    assert "imagen4" in replay.text and "idempotent-replayed" not in replay.headers
    # A key of the account that may use the model gets the first answer back, with no new charge.
    again = await gw.http.post(path, json=body, headers=headers(allowed))
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert (await gw.account(account_id))["balance"] == "92"


async def test_every_path_parameter_in_the_openapi_document_is_declared(gw: Harness) -> None:
    document = (await gw.http.get("/openapi.json")).json()
    missing = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            for name in re.findall(r"{(\w+)}", path):
                if name not in declared:
                    missing.append(f"{method.upper()} {path}: {name}")
    assert missing == []


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"hold_timeout_s": 120, "request_deadline_s": 300}, ("GATEWAY_HOLD_TIMEOUT_S", "GATEWAY_REQUEST_DEADLINE_S")),
        ({"hold_timeout_s": 300, "request_deadline_s": 300}, ("GATEWAY_HOLD_TIMEOUT_S", "GATEWAY_REQUEST_DEADLINE_S")),
        ({"retention_days": 0.001}, ("GATEWAY_RETENTION_DAYS", "GATEWAY_REQUEST_DEADLINE_S")),
    ],
)
def test_a_hold_shorter_than_the_request_deadline_is_refused_at_start(
    fields: dict[str, float], names: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, **fields)  # type: ignore[arg-type]
    for name in names:
        assert name in str(refused.value)
    Settings(_env_file=None, hold_timeout_s=900, request_deadline_s=300)  # the defaults still start


def test_serve_exits_with_the_message_when_the_hold_is_shorter_than_the_deadline(tmp_path: Path) -> None:
    env = gateway_env(
        f"sqlite+aiosqlite:///{tmp_path}/gw.db",
        tmp_path / "data",
        GATEWAY_HOLD_TIMEOUT_S="60",
        GATEWAY_REQUEST_DEADLINE_S="300",
    )
    command = [*gateway_command(), "serve", "--host", "127.0.0.1", "--port", "0"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode != 0
    assert "GATEWAY_HOLD_TIMEOUT_S" in result.stderr and "GATEWAY_REQUEST_DEADLINE_S" in result.stderr


TOO_BIG = 2**63
OUT_OF_RANGE = [
    ("POST", "/admin/channels", {"name": "c", "provider": "local", "max_concurrency": TOO_BIG}, "max_concurrency"),
    ("POST", "/admin/channels", {"name": "c", "provider": "local", "weight": TOO_BIG}, "weight"),
    ("POST", "/admin/keys", {"rpm": TOO_BIG}, "rpm"),
    ("POST", "/admin/keys", {"max_concurrency": 2**31}, "max_concurrency"),
    ("PUT", "/admin/models/m1", {"credits_per_image": "1", "max_images": TOO_BIG}, "max_images"),
    # A price whose charge cannot be computed or held would be a 500 on every caller request.
    ("PUT", "/admin/models/m1", {"credits_per_image": "100000000000000", "multiplier": "1000"}, "credits_per_image"),
    ("POST", "/admin/channels", {"name": "c", "provider": "local", "multiplier": "100000000000000"}, "multiplier"),
    # Instants with no UTC equivalent, and text PostgreSQL cannot store.
    ("POST", "/admin/keys", {"expires_at": "9999-12-31T23:59:59-23:59"}, "expires_at"),
    ("POST", "/admin/keys", {"expires_at": "0001-01-01T00:00:00+01:00"}, "expires_at"),
    ("POST", "/admin/accounts", {"name": "a\u0000b"}, "name"),
    ("POST", "/admin/channels", {"name": "c", "provider": "local", "models": {"imagen4": "x\u0000"}}, "models"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), OUT_OF_RANGE)
async def test_out_of_range_integers_on_admin_routes_are_a_4xx_naming_the_field(
    gw: Harness, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    account = await gw.create_account()
    if path == "/admin/keys":
        body = {"account_id": account["id"], **body}
    response = await gw.admin(method, path, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert field in response.text


async def test_out_of_range_ledger_cursor_and_balances_are_a_4xx(gw: Harness) -> None:
    account = await gw.create_account(credits="100000000000000")
    page = await gw.admin("GET", f"/admin/accounts/{account['id']}/ledger", params={"before": str(TOO_BIG)})
    assert 400 <= page.status_code < 500, page.text
    assert "before" in page.text
    for params in ({"start": "9999-12-31T23:59:59-23:59"}, {"account_id": "\x00"}):
        for path in ("/admin/usage", "/admin/usage/export"):
            response = await gw.admin("GET", path, params=params)
            assert response.status_code == 400 and next(iter(params)) in response.text, response.text
    missing = await gw.admin("GET", "/admin/accounts/%00")
    assert missing.status_code == 400 and "account_id" in missing.text, missing.text
    # Grants that would take a balance past what an account can hold are refused, not overflowed.
    statuses = []
    for _ in range(100):
        grant = await gw.admin("POST", f"/admin/accounts/{account['id']}/credits", json={"amount": "100000000000000"})
        statuses.append(grant.status_code)
        if grant.status_code != 200:
            assert grant.status_code < 500 and "amount" in grant.text, grant.text
            break
    assert statuses[-1] == 400, statuses
    assert await gw.ledger_problems() == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/images/generations", {"prompt": "a kite", "user": "team\u0000a"}, "user"),
        ("/v1/images/generations", {"prompt": "a kite", "metadata": {"job": "7\u0000"}}, "metadata.job"),
        ("/v1/images/generations", {"prompt": "a \u0000kite"}, "prompt"),
        ("/v1beta/models/imagen4:predict", {"instances": [{"prompt": "a\u0000"}]}, "instances[0].prompt"),
    ],
)
async def test_a_nul_character_in_a_caller_body_is_a_400_naming_the_field(
    gw: Harness, path: str, body: dict[str, Any], field: str
) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    response = await gw.generate(key, body, path=path)
    assert response.status_code == 400, response.text
    assert field in response.text
    assert (await gw.account(account_id))["balance"] == "100"
