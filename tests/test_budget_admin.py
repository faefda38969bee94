"""Budgets and low-balance thresholds as operators set them: PATCH for accounts and keys, unique
account names, what GET and /v1/account show, the `update` commands, and the low-balance alert
armed again by a grant. On both databases."""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.alerts.models import Alert
from app.cli import main
from tests.support.harness import Harness
from tests.support.processes import gateway_env


async def patch(gw: Harness, kind: str, id_: str, body: Any) -> dict[str, Any]:
    response = await gw.admin("PATCH", f"/admin/{kind}/{id_}", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def spend(gw: Harness, key: str, images: int, model: str = "imagen4") -> None:
    """imagen4 costs 8 credits an image on the local channel."""
    response = await gw.generate(key, {"model": model, "prompt": "a lighthouse", "n": images})
    assert response.status_code == 200, response.text


async def test_patching_an_account_changes_only_the_fields_sent(gw: Harness) -> None:
    account = await gw.create_account(credits=500, name="ads")
    assert account["budget"] is None and account["alert_below"] is None

    changed = await patch(gw, "accounts", account["id"], {"budget": {"credits": "1000", "period": "month"}})
    assert changed["name"] == "ads" and changed["balance"] == "500" and changed["alert_below"] is None
    assert changed["budget"]["credits"] == "1000" and changed["budget"]["period"] == "month"

    changed = await patch(gw, "accounts", account["id"], {"alert_below": 50})
    assert changed["alert_below"] == "50" and changed["budget"]["credits"] == "1000"

    changed = await patch(gw, "accounts", account["id"], {"name": "ads-emea", "budget": None})
    assert changed["name"] == "ads-emea" and changed["budget"] is None and changed["alert_below"] == "50"

    # What GET returns is a valid PATCH: read-only fields (balance, webhook_secret…) are ignored.
    fetched = await gw.account(account["id"])
    fetched["alert_below"] = None
    assert (await patch(gw, "accounts", account["id"], fetched))["alert_below"] is None
    assert (await gw.account(account["id"]))["balance"] == "500"


async def test_a_budget_patch_leaves_a_keys_models_and_limits_alone(gw: Harness) -> None:
    account = await gw.create_account(credits=500)
    created = await gw.admin(
        "POST", "/admin/keys", json={"account_id": account["id"], "name": "svc", "models": ["imagen4"], "rpm": 30}
    )
    key = created.json()

    changed = await patch(gw, "keys", key["id"], {"budget": {"credits": "100", "period": "week"}})
    assert changed["models"] == ["imagen4"] and changed["rpm"] == 30 and changed["name"] == "svc"
    assert changed["budget"]["credits"] == "100" and changed["budget"]["period"] == "week"

    changed = await patch(
        gw, "keys", key["id"], {"rpm": None, "max_concurrency": 2, "expires_at": "2099-01-01T00:00:00Z"}
    )
    assert changed["rpm"] is None and changed["max_concurrency"] == 2 and changed["models"] == ["imagen4"]
    assert changed["expires_at"].startswith("2099-01-01") and changed["budget"]["credits"] == "100"

    fetched = await gw.admin("GET", f"/admin/keys/{key['id']}")
    assert fetched.status_code == 200 and fetched.json()["max_concurrency"] == 2
    listed = (await gw.admin("GET", "/admin/keys", params={"account_id": account["id"]})).json()["data"]
    assert listed[0]["budget"]["credits"] == "100"

    assert (await patch(gw, "keys", key["id"], {"models": None, "budget": None}))["models"] is None
    assert (await gw.admin("GET", f"/admin/keys/{key['id']}")).json()["budget"] is None


BAD_PATCHES = [
    ("accounts", {"budget": {"credits": "0", "period": "month"}}, "budget.credits"),
    ("accounts", {"budget": {"credits": "-5", "period": "month"}}, "budget.credits"),
    ("accounts", {"budget": {"credits": "1000000000000000", "period": "month"}}, "budget.credits"),
    ("accounts", {"budget": {"credits": "1.00001", "period": "day"}}, "budget.credits"),
    ("accounts", {"budget": {"credits": "10", "period": "year"}}, "budget.period"),
    ("accounts", {"budget": {"credits": "10"}}, "budget.period"),
    ("accounts", {"budget": {"credits": "10", "period": "day", "cap": 1}}, "budget.cap"),
    ("accounts", {"budget": "500/day"}, "budget"),
    ("accounts", {"alert_below": "-1"}, "alert_below"),
    ("accounts", {"name": None}, "name"),
    ("accounts", {"name": ""}, "name"),
    ("accounts", {"colour": "red"}, "colour"),
    ("keys", {"rpm": 0}, "rpm"),
    ("keys", {"models": "imagen4"}, "models"),
    ("keys", {"credit_cap": "-1"}, "credit_cap"),
    ("keys", {"expires_at": "soon"}, "expires_at"),
    ("keys", {"budget": {"credits": "5", "period": "hour"}}, "budget.period"),
    ("keys", {"account_ids": ["x"]}, "account_ids"),
]


async def test_bad_patches_are_400s_that_name_the_field(gw: Harness) -> None:
    account = await gw.create_account(credits=10)
    key = (await gw.admin("POST", "/admin/keys", json={"account_id": account["id"]})).json()
    ids = {"accounts": account["id"], "keys": key["id"]}
    for kind, body, param in BAD_PATCHES:
        response = await gw.admin("PATCH", f"/admin/{kind}/{ids[kind]}", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["param"] == param, (body, response.text)
    for kind in ids:
        empty = await gw.admin("PATCH", f"/admin/{kind}/{ids[kind]}", json={})
        assert empty.status_code == 400 and "Nothing to change" in empty.json()["error"]["message"]
        missing = await gw.admin("PATCH", f"/admin/{kind}/nope", json={"name": "x"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    # Nothing of the above changed anything.
    assert (await gw.account(account["id"]))["budget"] is None


async def test_account_names_are_unique(gw: Harness) -> None:
    ads = await gw.create_account(credits=1, name="ads")
    growth = await gw.create_account(credits=1, name="growth")
    duplicate = await gw.admin("POST", "/admin/accounts", json={"name": "ads"})
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "conflict"
    assert duplicate.json()["error"]["param"] == "name"
    renamed = await gw.admin("PATCH", f"/admin/accounts/{growth['id']}", json={"name": "ads"})
    assert renamed.status_code == 409 and renamed.json()["error"]["code"] == "conflict"
    assert (await gw.account(growth["id"]))["name"] == "growth"
    # Sending an account's own name (as a GET round-trip does) is not a conflict.
    assert (await patch(gw, "accounts", ads["id"], {"name": "ads", "alert_below": "0"}))["name"] == "ads"
    names = [a["name"] for a in (await gw.admin("GET", "/admin/accounts")).json()["data"]]
    assert sorted(names) == ["ads", "growth"]


async def test_a_budget_set_mid_period_counts_what_was_spent_already(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=1000)
    await spend(gw, key, 2)  # 16 credits this month, before any budget

    account = await patch(gw, "accounts", account_id, {"budget": {"credits": "20", "period": "month"}})
    assert account["budget"]["spent"] == "16" and account["budget"]["remaining"] == "4"
    assert account["budget"]["resets_at"].endswith(("T00:00:00Z", "T00:00:00+00:00"))

    over = await gw.generate(key, {"model": "imagen4", "prompt": "one more", "n": 1})  # 8 > 4 left
    assert over.status_code == 402, over.text
    assert over.json()["error"]["code"] == "budget_exceeded"
    after = await gw.account(account_id)
    assert after["balance"] == "984" and after["budget"]["spent"] == "16"  # the refusal cost nothing

    await spend(gw, key, 1, model="imagen4-fast")  # 4 credits: exactly what is left
    assert (await gw.account(account_id))["budget"]["remaining"] == "0"


async def key_id_of(gw: Harness, key: str) -> str:
    response = await gw.http.get("/v1/account", headers={"authorization": f"Bearer {key}"})
    key_id: str = response.json()["key"]["id"]
    return key_id


async def test_a_key_budget_counts_only_that_keys_spend(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=1000)
    other = await gw.create_key(account_id)
    await spend(gw, key, 1)
    await spend(gw, other, 2)

    budgeted = await patch(gw, "keys", await key_id_of(gw, key), {"budget": {"credits": "50", "period": "day"}})
    assert budgeted["budget"]["spent"] == "8" and budgeted["budget"]["remaining"] == "42"
    budgeted = await patch(gw, "keys", await key_id_of(gw, other), {"budget": {"credits": "20", "period": "day"}})
    assert budgeted["budget"]["spent"] == "16" and budgeted["budget"]["remaining"] == "4"
    over = await gw.generate(other, {"model": "imagen4", "prompt": "x", "n": 1})
    assert over.status_code == 402 and over.json()["error"]["code"] == "budget_exceeded", over.text
    await spend(gw, key, 1)  # the other key's budget is its own


async def test_v1_account_shows_the_webhook_secret_and_budgets(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=300)
    auth = {"authorization": f"Bearer {key}"}
    before = (await gw.http.get("/v1/account", headers=auth)).json()
    assert before["budget"] is None and before["key_budget"] is None
    assert before["webhook_secret"] == (await gw.account(account_id))["webhook_secret"]
    assert before["webhook_secret"].startswith("whsec_")

    await spend(gw, key, 1)
    await patch(gw, "accounts", account_id, {"budget": {"credits": "100", "period": "week"}})
    await patch(gw, "keys", before["key"]["id"], {"budget": {"credits": "10", "period": "day"}})
    after = (await gw.http.get("/v1/account", headers=auth)).json()
    assert after["budget"]["credits"] == "100" and after["budget"]["period"] == "week"
    assert after["budget"]["spent"] == "8" and after["budget"]["remaining"] == "92"
    key_budget = after["key_budget"]
    assert (key_budget["credits"], key_budget["period"], key_budget["spent"], key_budget["remaining"]) == (
        "10",
        "day",
        "8",
        "2",
    )


async def low_balance_alerts(gw: Harness, account_id: str) -> int:
    async with gw.gateway.db.sessions() as session:
        rows = await session.scalars(select(Alert.data).where(Alert.type == "account.low_balance"))
        return sum(1 for data in rows if data["account_id"] == account_id)


async def test_a_grant_arms_the_low_balance_alert_again(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=116)
    await patch(gw, "accounts", account_id, {"alert_below": "100"})
    assert await low_balance_alerts(gw, account_id) == 0

    await spend(gw, key, 2)  # 100 left: not below
    assert await low_balance_alerts(gw, account_id) == 0
    await spend(gw, key, 1)  # 92: below, once
    await spend(gw, key, 1)  # 84: still below, no second alert
    assert await low_balance_alerts(gw, account_id) == 1

    granted = await gw.admin("POST", f"/admin/accounts/{account_id}/credits", json={"amount": "20", "note": "top-up"})
    assert granted.status_code == 200 and granted.json()["available"] == "104"
    assert await low_balance_alerts(gw, account_id) == 1
    await spend(gw, key, 1)  # 96: a new crossing
    assert await low_balance_alerts(gw, account_id) == 2


async def test_a_threshold_set_above_the_balance_alerts_at_once(gw: Harness) -> None:
    account = await gw.create_account(credits=50)
    await patch(gw, "accounts", account["id"], {"alert_below": "100"})
    assert await low_balance_alerts(gw, account["id"]) == 1
    await patch(gw, "accounts", account["id"], {"alert_below": "200"})  # the same crossing
    assert await low_balance_alerts(gw, account["id"]) == 1


def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`image-gateway ARGS` in this process (a new process costs seconds on a loaded machine)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, redirect_stdout(out), redirect_stderr(err):
        for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
            mp.delenv(name)
        for name, value in env.items():
            if name.startswith("GATEWAY_"):
                mp.setenv(name, value)
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def cli_json(env: dict[str, str], *args: str) -> Any:
    code, out, err = run_cli(env, *args)
    assert code == 0, err
    return json.loads(out)


def test_update_commands_set_budgets_and_limits(database_url: str, tmp_path: Path) -> None:
    env = gateway_env(database_url, tmp_path / "data")
    account = cli_json(env, "accounts", "create", "search", "--credits", "40")
    assert account["budget"] is None

    updated = cli_json(env, "accounts", "update", "search", "--budget", "500/day", "--alert-below", "10")
    assert updated["id"] == account["id"] and updated["alert_below"] == "10"
    assert updated["budget"]["credits"] == "500" and updated["budget"]["period"] == "day"
    assert updated["budget"]["spent"] == "0"
    renamed = cli_json(env, "accounts", "update", account["id"], "--name", "search-eu", "--no-budget")
    assert renamed["name"] == "search-eu" and renamed["budget"] is None and renamed["alert_below"] == "10"

    key = cli_json(env, "keys", "create", "--account", "search-eu", "--name", "indexer", "--models", "imagen4")
    changed = cli_json(env, "keys", "update", key["id"], "--rpm", "5", "--budget", "100/week")
    assert changed["rpm"] == 5 and changed["models"] == ["imagen4"] and changed["budget"]["period"] == "week"
    changed = cli_json(env, "keys", "update", "indexer", "--rpm", "none", "--all-models", "--credit-cap", "30")
    assert changed["rpm"] is None and changed["models"] is None and changed["credit_cap"] == "30"
    assert changed["budget"]["credits"] == "100"

    code, _, err = run_cli(env, "accounts", "update", "search-eu", "--budget", "500")
    assert code == 2 and "CREDITS/PERIOD" in err
    code, _, err = run_cli(env, "accounts", "update", "search-eu", "--budget", "500/year")
    assert code == 2 and "budget.period" in err
    code, _, err = run_cli(env, "accounts", "create", "search-eu")
    assert code == 1 and "exists already" in err
    assert [a["budget"] for a in cli_json(env, "accounts", "list")] == [None]
