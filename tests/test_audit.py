"""The audit log: every change made through the admin API or the command line, with its actor and
each field's value before and after, secrets as "***"; filters and pages; nothing for a change
that failed."""

from __future__ import annotations

import asyncio
import getpass
import io
import os
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pytest

from app.admin.audit import Entity
from app.cli import main
from app.operators.audited import ENTITIES
from app.settings import Settings
from tests.support.harness import Harness, running_app
from tests.support.logs import from_logger, json_log_lines
from tests.support.processes import gateway_env


class Operator:
    """A named operator driving the admin API with its own token."""

    def __init__(self, gw: Harness, token: str) -> None:
        self.gw = gw
        self.headers = {"authorization": f"Bearer {token}"}

    async def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.gw.http.request(method, path, headers=self.headers, **kwargs)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None


async def operator(gw: Harness, name: str, role: str) -> Operator:
    created = await gw.admin("POST", "/admin/operators", json={"name": name, "role": role})
    assert created.status_code == 201, created.text
    return Operator(gw, created.json()["token"])


async def audit(gw: Harness, **params: Any) -> list[dict[str, Any]]:
    response = await gw.admin("GET", "/admin/audit", params=params)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def test_each_change_is_logged_with_its_actor_and_values_before_and_after(gw: Harness) -> None:
    alice = await operator(gw, "alice", "admin")
    account = await alice("POST", "/admin/accounts", json={"name": "search", "credits": "10"})
    await alice("PATCH", f"/admin/accounts/{account['id']}", json={"name": "search-team", "alert_below": "3"})
    channel = await alice(
        "POST", "/admin/channels", json={"name": "relay", "provider": "local", "auth": {"api_key": "sk-first-secret"}}
    )
    await alice("PATCH", f"/admin/channels/{channel['id']}", json={"auth": {"api_key": "sk-second-secret"}})
    await alice("PATCH", f"/admin/channels/{channel['id']}", json={"enabled": False})
    await alice("PUT", "/admin/models/poster", json={"credits_per_image": "5"})
    await alice("PATCH", "/admin/models/poster", json={"credits_per_image": "8"})
    key = await alice("POST", "/admin/keys", json={"account_id": account["id"], "name": "ci"})
    await alice("DELETE", f"/admin/keys/{key['id']}")
    await alice("DELETE", f"/admin/channels/{channel['id']}")

    entries = await audit(gw, actor="alice")
    assert {e["actor"] for e in entries} == {"alice"}
    log = [(e["action"], e["entity"], e["entity_id"]) for e in reversed(entries)]
    assert log == [
        ("create", "account", account["id"]),
        ("grant", "account", account["id"]),
        ("update", "account", account["id"]),
        ("create", "channel", channel["id"]),
        ("update", "channel", channel["id"]),
        ("update", "channel", channel["id"]),
        ("create", "model", "poster"),
        ("update", "model", "poster"),
        ("create", "key", key["id"]),
        ("update", "key", key["id"]),
        ("delete", "channel", channel["id"]),
    ]
    changes = [e["changes"] for e in reversed(entries)]
    created_account, grant, renamed, created_channel, rekeyed, disabled, _, repriced, created_key, revoked, deleted = (
        changes
    )
    assert created_account["name"] == [None, "search"] and created_account["webhook_secret"] == [None, "***"]
    assert grant == {"balance": ["0", "10"], "amount": [None, "10"], "note": [None, "initial credits"]}
    # One entry for one PATCH, though the service flushed the name and the threshold apart.
    assert renamed == {"name": ["search", "search-team"], "alert_below": [None, "3"]}
    # A new object shows all of itself, defaults included.
    assert (created_channel["auth"], created_channel["priority"], created_channel["enabled"]) == (
        [None, "***"],
        [None, 0],
        [None, True],
    )
    assert rekeyed == {"auth": ["***", "***"]}
    assert disabled == {"enabled": [True, False]}  # the secret, untouched, is not "changed"
    assert repriced == {"credits_per_image": ["5", "8"]}
    assert created_key["key_hash"] == [None, "***"] and created_key["name"] == [None, "ci"]
    assert list(revoked) == ["revoked_at"] and revoked["revoked_at"][0] is None
    assert deleted["name"] == ["relay", None] and deleted["auth"] == ["***", None]
    everything = (await gw.admin("GET", "/admin/audit")).text
    for secret in ("sk-first-secret", "sk-second-secret", key["key"], account["webhook_secret"] or "whsec_"):
        assert secret not in everything


async def test_operators_and_grants_are_logged_with_the_real_actor(gw: Harness) -> None:
    account = await gw.create_account(0, name="design")
    created = (await gw.admin("POST", "/admin/operators", json={"name": "fin", "role": "finance"})).json()
    fin = Operator(gw, created["token"])
    await fin("POST", f"/admin/accounts/{account['id']}/credits", json={"amount": "250", "note": "Q3"})
    await fin(
        "POST", f"/admin/accounts/{account['id']}/credits", json={"amount": "-50", "note": "refund", "actor": "bo"}
    )
    await gw.admin("DELETE", "/admin/operators/fin")

    grant, adjustment = reversed(await audit(gw, actor="fin", entity="account"))
    assert (grant["action"], grant["changes"]) == (
        "grant",
        {"balance": ["0", "250"], "amount": [None, "250"], "note": [None, "Q3"]},
    )
    assert adjustment["action"] == "adjustment" and adjustment["changes"]["balance"] == ["250", "200"]
    ledger = (await gw.admin("GET", f"/admin/accounts/{account['id']}/ledger")).json()["data"]
    assert [e["actor"] for e in ledger] == ["fin (on behalf of bo)", "fin"]

    revoked, made = await audit(gw, entity="operator", entity_id=created["id"])
    assert (made["actor"], made["action"], made["changes"]["role"], made["changes"]["token_hash"]) == (
        "root",
        "create",
        [None, "finance"],
        [None, "***"],
    )
    assert (revoked["actor"], revoked["action"], list(revoked["changes"])) == ("root", "update", ["revoked_at"])
    assert created["token"] not in (await gw.admin("GET", "/admin/audit")).text


async def test_a_change_that_fails_leaves_no_entry(gw: Harness) -> None:
    await gw.admin("POST", "/admin/channels", json={"name": "taken", "provider": "local"})
    account = await gw.create_account(5, name="ops")
    before = await audit(gw)
    # The duplicate channel is flushed (and audited) before the database refuses its name.
    duplicate = await gw.admin("POST", "/admin/channels", json={"name": "taken", "provider": "local"})
    assert duplicate.status_code == 409
    renamed = await gw.admin("PATCH", f"/admin/accounts/{account['id']}", json={"name": "ops", "alert_below": "-1"})
    assert renamed.status_code == 400
    overdrawn = await gw.admin("POST", f"/admin/accounts/{account['id']}/credits", json={"amount": "-6", "note": "x"})
    assert overdrawn.status_code == 400
    viewer = await operator(gw, "val", "viewer")
    refused = await gw.http.delete("/admin/channels/nothing", headers=viewer.headers)
    assert refused.status_code == 403
    after = await audit(gw)
    assert after[1:] == before and after[0]["entity"] == "operator"  # only val's creation


def test_the_entity_filter_offers_every_audited_entity() -> None:
    assert sorted(get_args(Entity)) == list(ENTITIES)


async def test_filters_and_pages(gw: Harness) -> None:
    alice, bob = await operator(gw, "alice", "admin"), await operator(gw, "bob", "admin")
    start = datetime.now(UTC)  # after the operators' own creation
    for n in range(5):
        await alice("PUT", f"/admin/models/m{n}", json={"credits_per_image": str(n + 1)})
    await bob("POST", "/admin/channels", json={"name": "b", "provider": "local"})

    assert [e["entity_id"] for e in await audit(gw, actor="alice")] == ["m4", "m3", "m2", "m1", "m0"]
    assert [e["actor"] for e in await audit(gw, entity="channel")] == ["bob"]
    assert [e["action"] for e in await audit(gw, entity="model", entity_id="m2")] == ["create"]
    assert len(await audit(gw, start=start.isoformat())) == 6
    assert await audit(gw, end=start.isoformat(), actor="alice") == []

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"actor": "alice", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await gw.admin("GET", "/admin/audit", params=params)).json()
        seen += [e["entity_id"] for e in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["m4", "m3", "m2", "m1", "m0"]

    cases: list[tuple[dict[str, Any], str]] = [
        ({"entity": "planet"}, "entity"),
        ({"limit": 0}, "limit"),
        ({"cursor": "abc"}, "cursor"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-02-01", "end": "2026-01-01"}, "end"),
        ({"who": "alice"}, "who"),
    ]
    for params, param in cases:
        refused = await gw.admin("GET", "/admin/audit", params=params)
        assert (refused.status_code, refused.json()["error"]["param"]) == (400, param), refused.text


async def test_the_admin_change_log_line_names_the_operator(settings: Settings) -> None:
    with json_log_lines() as lines:
        async with running_app(settings) as gw:
            ops = await operator(gw, "ops-lead", "admin")
            await ops("PUT", "/admin/models/banner", json={"credits_per_image": "4"})
    (line,) = [c for c in from_logger(lines, "app.admin") if c["entity_id"] == "banner"]
    assert (line["actor"], line["role"], line["method"], line["status"]) == ("ops-lead", "admin", "PUT", 201)


def run_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    """`image-gateway ARGS` in this process, with the gateway's environment."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, redirect_stdout(out), redirect_stderr(err):
        for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
            mp.delenv(name)
        for name, value in env.items():
            if name.startswith("GATEWAY_"):
                mp.setenv(name, value)
        code = main(list(args))
    return code, err.getvalue()


def test_changes_from_the_command_line_are_logged_as_cli_and_the_user(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    env = gateway_env(database_url, settings.data_dir)
    for command in (("accounts", "create", "from-the-shell"), ("accounts", "grant", "from-the-shell", "15")):
        code, err = run_cli(env, *command, "--json")
        assert code == 0, err

    async def logged() -> list[dict[str, Any]]:
        async with running_app(settings) as gw:
            return await audit(gw, entity="account")

    grant, created = asyncio.run(logged())
    assert {created["actor"], grant["actor"]} == {f"cli:{getpass.getuser()}"}
    assert (created["action"], created["changes"]["name"]) == ("create", [None, "from-the-shell"])
    assert (grant["action"], grant["changes"]["balance"]) == ("grant", ["0", "15"])


@pytest.mark.parametrize("cursor", ["abc", "99999999999999999999"])
def test_a_bad_cursor_on_the_command_line_is_named_not_a_traceback(
    settings: Settings, database_url: str, cursor: str
) -> None:
    # A number past the id column's 64 bits reached the database before (OverflowError on SQLite).
    env = gateway_env(database_url, settings.data_dir)
    assert run_cli(env, "accounts", "create", "someone", "--json")[0] == 0  # a migrated database
    code, err = run_cli(env, "audit", "list", "--cursor", cursor)
    assert (code, err.strip()) == (2, "error: --cursor must be the next_cursor of a previous page")
