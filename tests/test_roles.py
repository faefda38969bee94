"""Who may call which admin route: every `/admin` route of the app × every kind of caller, as one
table. A route added without a line in ROUTES fails `test_every_admin_route_has_an_expectation`.

Callers: the root token, a named operator of each role (admin, finance, viewer), nobody, a team's
gateway key and a revoked operator. A role that may not call a route gets 403 `forbidden` before
anything is looked up (an id that does not exist is refused the same way, so a refusal says
nothing about what exists), and a refused request changes nothing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from app.main import create_app
from app.settings import Settings
from tests.support.harness import ADMIN_TOKEN, Harness, running_app

Role = str  # viewer | finance | admin


@dataclass
class World:
    """What the routes act on, made once per database through the root token."""

    gw: Harness
    account_id: str
    key_id: str
    key: str  # a team's gateway key: a caller, never an admin
    channel_id: str
    model_id: str
    request_id: str
    operator_id: str = ""
    tokens: dict[str, str | None] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def fresh(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}"

    async def root(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.gw.admin(method, path, **kwargs)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    async def new_key(self) -> str:
        created = await self.root("POST", "/admin/keys", json={"account_id": self.account_id, "name": "spare"})
        return str(created["id"])

    async def new_channel(self) -> str:
        body = {"name": self.fresh("spare"), "provider": "local", "enabled": False, "models": {"imagen4": "imagen4"}}
        return str((await self.root("POST", "/admin/channels", json=body))["id"])

    async def new_model_id(self) -> str:
        return self.fresh("put-model")

    async def new_operator(self) -> str:
        return str(
            (await self.root("POST", "/admin/operators", json={"name": self.fresh("op"), "role": "viewer"}))["id"]
        )


@dataclass(frozen=True)
class Request:
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)


# Builds a request that the route accepts from a caller allowed to make it. With fresh=True a route
# that removes something gets a target of its own (an allowed call really removes it); with
# fresh=False it names the shared objects, which a refused call must leave as they are.
Build = Callable[[World, bool], Awaitable[Request]]


@dataclass(frozen=True)
class Route:
    least: Role
    build: Build
    audited: bool = False  # an allowed call writes an audit entry naming its caller


def at(path: str, **kwargs: Any) -> Build:
    async def build(w: World, fresh: bool) -> Request:
        return Request(path.format(**_ids(w)), kwargs)

    return build


def body(path: str, make: Callable[[World], dict[str, Any]]) -> Build:
    async def build(w: World, fresh: bool) -> Request:
        return Request(path.format(**_ids(w)), {"json": make(w)})

    return build


def own(path: str, name: str, spare: Callable[[World], Awaitable[str]], **kwargs: Any) -> Build:
    """A route that removes or replaces its target: an allowed call gets a target of its own."""

    async def build(w: World, fresh: bool) -> Request:
        ids = _ids(w)
        if fresh:
            ids[name] = await spare(w)
        return Request(path.format(**ids), kwargs)

    return build


def _ids(w: World) -> dict[str, str]:
    return {
        "account_id": w.account_id,
        "key_id": w.key_id,
        "channel_id": w.channel_id,
        "model_id": w.model_id,
        "request_id": w.request_id,
        "operator_id": w.operator_id,
    }


BUDGET = {"budget": {"credits": "500", "period": "month"}}


def a_budget(w: World) -> dict[str, Any]:
    """A budget unlike the last one (the same one again would change nothing, and log nothing)."""
    return {"budget": {"credits": str(500 + next(w.counter)), "period": "month"}}


PROVIDER_CSV = "date,upstream_model,images\n2026-01-01,imagen4,0\n"

ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/admin/accounts"): Route("admin", body("/admin/accounts", lambda w: {"name": w.fresh("team")}), True),
    ("GET", "/admin/accounts"): Route("viewer", at("/admin/accounts")),
    ("GET", "/admin/accounts/{account_id}"): Route("viewer", at("/admin/accounts/{account_id}")),
    ("PATCH", "/admin/accounts/{account_id}"): Route(
        "finance", body("/admin/accounts/{account_id}", lambda w: a_budget(w)), True
    ),
    ("POST", "/admin/accounts/{account_id}/credits"): Route(
        "finance", body("/admin/accounts/{account_id}/credits", lambda w: {"amount": "1", "note": "matrix"}), True
    ),
    ("GET", "/admin/accounts/{account_id}/ledger"): Route("viewer", at("/admin/accounts/{account_id}/ledger")),
    ("POST", "/admin/keys"): Route("admin", body("/admin/keys", lambda w: {"account_id": w.account_id}), True),
    ("GET", "/admin/keys"): Route("viewer", at("/admin/keys")),
    ("GET", "/admin/keys/{key_id}"): Route("viewer", at("/admin/keys/{key_id}")),
    ("PATCH", "/admin/keys/{key_id}"): Route("finance", body("/admin/keys/{key_id}", lambda w: a_budget(w)), True),
    ("DELETE", "/admin/keys/{key_id}"): Route("admin", own("/admin/keys/{key_id}", "key_id", World.new_key), True),
    ("GET", "/admin/models"): Route("viewer", at("/admin/models")),
    ("PUT", "/admin/models/{model_id}"): Route(
        "admin", own("/admin/models/{model_id}", "model_id", World.new_model_id, json={"credits_per_image": "3"}), True
    ),
    ("PATCH", "/admin/models/{model_id}"): Route(
        "admin", body("/admin/models/{model_id}", lambda w: {"description": w.fresh("priced")}), True
    ),
    ("GET", "/admin/channels"): Route("viewer", at("/admin/channels")),
    ("POST", "/admin/channels"): Route(
        "admin", body("/admin/channels", lambda w: {"name": w.fresh("ch"), "provider": "local", "enabled": False}), True
    ),
    ("GET", "/admin/channels/{channel_id}"): Route("viewer", at("/admin/channels/{channel_id}")),
    ("PATCH", "/admin/channels/{channel_id}"): Route(
        "admin", body("/admin/channels/{channel_id}", lambda w: {"priority": next(w.counter)}), True
    ),
    # Not audited: it changes no setting (the provider's bill sees it, as an attempt).
    ("POST", "/admin/channels/{channel_id}/test"): Route(
        "admin", body("/admin/channels/{channel_id}/test", lambda w: {"model": "imagen4"})
    ),
    ("DELETE", "/admin/channels/{channel_id}"): Route(
        "admin", own("/admin/channels/{channel_id}", "channel_id", World.new_channel), True
    ),
    ("GET", "/admin/usage"): Route("viewer", at("/admin/usage", params={"group_by": "model"})),
    ("GET", "/admin/usage/export"): Route("finance", at("/admin/usage/export")),
    ("GET", "/admin/attempts/export"): Route("finance", at("/admin/attempts/export")),
    ("GET", "/admin/ledger/check"): Route("viewer", at("/admin/ledger/check")),
    ("GET", "/admin/ledger/export"): Route("finance", at("/admin/ledger/export")),
    ("POST", "/admin/reconcile"): Route(
        "finance",
        lambda w, fresh: _ready(
            Request(
                "/admin/reconcile",
                {"params": {"channel": w.channel_id}, "content": PROVIDER_CSV, "headers": {"content-type": "text/csv"}},
            )
        ),
    ),
    ("GET", "/admin/requests"): Route("viewer", at("/admin/requests")),
    ("GET", "/admin/requests/{request_id}"): Route("viewer", at("/admin/requests/{request_id}")),
    ("GET", "/admin/alerts"): Route("viewer", at("/admin/alerts")),
    ("POST", "/admin/operators"): Route(
        "admin", body("/admin/operators", lambda w: {"name": w.fresh("person"), "role": "viewer"}), True
    ),
    # Names and roles only: the audit log shows every operator's name to every role anyway.
    ("GET", "/admin/operators"): Route("viewer", at("/admin/operators")),
    ("DELETE", "/admin/operators/{operator_id}"): Route(
        "admin", own("/admin/operators/{operator_id}", "operator_id", World.new_operator), True
    ),
    ("GET", "/admin/audit"): Route("viewer", at("/admin/audit")),
}

ROLE_OF = {"root": "admin", "admin operator": "admin", "finance operator": "finance", "viewer operator": "viewer"}
UNAUTHENTICATED = ("no token", "caller key", "revoked operator")
RANK = {"viewer": 0, "finance": 1, "admin": 2}


async def _ready(request: Request) -> Request:
    return request


def expected(caller: str, least: Role) -> int:
    """2 (any 2xx), 401 or 403."""
    if caller in UNAUTHENTICATED:
        return 401
    return 2 if RANK[ROLE_OF[caller]] >= RANK[least] else 403


def admin_routes(app: FastAPI) -> set[tuple[str, str]]:
    return {
        (method, context.path)
        for context in iter_route_contexts(app.routes)
        if context.path and context.path.startswith("/admin")
        for method in getattr(context.route, "methods", ())
    }


async def make_world(gw: Harness) -> World:
    account = await gw.create_account(100, name="matrix-team")
    key = await gw.create_key(account["id"])
    keys = (await gw.admin("GET", "/admin/keys", params={"account_id": account["id"]})).json()["data"]
    generated = await gw.generate(key, {"prompt": "a lighthouse"})
    assert generated.status_code == 200, generated.text
    w = World(
        gw=gw,
        account_id=account["id"],
        key_id=keys[0]["id"],
        key=key,
        channel_id="",
        model_id="matrix-model",
        request_id=generated.json()["id"],
    )
    w.channel_id = await w.new_channel()
    await w.root("PUT", f"/admin/models/{w.model_id}", json={"credits_per_image": "2"})
    w.tokens = {"root": ADMIN_TOKEN, "no token": None, "caller key": key}
    for role in ("admin", "finance", "viewer"):
        created = await w.root("POST", "/admin/operators", json={"name": f"{role}-person", "role": role})
        w.tokens[f"{role} operator"] = created["token"]
        w.operator_id = created["id"]  # the viewer's, last: what refused DELETEs name
    revoked = await w.root("POST", "/admin/operators", json={"name": "gone", "role": "admin"})
    await w.root("DELETE", f"/admin/operators/{revoked['id']}")
    w.tokens["revoked operator"] = revoked["token"]
    return w


async def send(w: World, caller: str, method: str, request: Request) -> httpx.Response:
    token = w.tokens[caller]
    headers = dict(request.kwargs.get("headers", {}))
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    kwargs = {**request.kwargs, "headers": headers}
    return await w.gw.http.request(method, request.path, **kwargs)


async def snapshot(w: World) -> dict[str, Any]:
    """Everything an admin route could change, read through the root token."""
    reads = {
        "accounts": "/admin/accounts",
        "keys": "/admin/keys",
        "models": "/admin/models",
        "channels": "/admin/channels",
        "operators": "/admin/operators?include_revoked=true",
        "audit": "/admin/audit?limit=1000",
        "ledger": f"/admin/accounts/{w.account_id}/ledger",
    }
    state = {name: await w.root("GET", path) for name, path in reads.items()}
    for channel in state["channels"]["data"]:
        channel.pop("health", None)  # live, not a setting
    return state


def error_code(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):  # a success: a CSV, a list, an empty body
        return None


def with_missing_id(template: str, request: Request) -> Request | None:
    """The same request naming an object that does not exist (None for a route without an id)."""
    segments, path = template.split("/"), request.path.split("/")
    named = [i for i, segment in enumerate(segments) if segment.startswith("{")]
    if not named:
        return None
    path[named[-1]] = "no-such-object"
    return Request("/".join(path), request.kwargs)


def test_every_admin_route_has_an_expectation() -> None:
    routes = admin_routes(create_app(Settings(_env_file=None)))
    assert len(routes) > 30
    assert sorted(routes - set(ROUTES)) == [], "add the new admin route to ROUTES with the least role it needs"
    assert sorted(set(ROUTES) - routes) == []


async def test_the_role_matrix(gw: Harness) -> None:
    w = await make_world(gw)
    callers = list(w.tokens)
    failures: list[str] = []

    # Refused calls first, against the shared objects, then a check that they changed nothing.
    refused: list[tuple[str, str, str, Request, int]] = []
    for (method, template), route in ROUTES.items():
        request = await route.build(w, False)
        missing = with_missing_id(template, request)
        for caller in callers:
            want = expected(caller, route.least)
            if want == 2:
                continue
            refused.append((caller, method, template, request, want))
            if missing is not None:
                refused.append((caller, method, template, missing, want))
    before = await snapshot(w)
    for caller, method, _, request, want in refused:
        response = await send(w, caller, method, request)
        code = error_code(response)
        want_code = "forbidden" if want == 403 else "invalid_admin_token"
        if (response.status_code, code) != (want, want_code):
            failures.append(f"{caller}: {method} {request.path} → {response.status_code} {code}, expected {want}")
    assert failures == []
    assert await snapshot(w) == before, "a refused request changed something"

    # Allowed calls: each succeeds, and a change is audited under the caller's own name.
    for (method, template), route in ROUTES.items():
        for caller in callers:
            if expected(caller, route.least) != 2:
                continue
            request = await route.build(w, True)
            response = await send(w, caller, method, request)
            if not 200 <= response.status_code < 300:
                failures.append(f"{caller}: {method} {template} → {response.status_code} {response.text[:200]}")
                continue
            if route.audited:
                newest = (await w.root("GET", "/admin/audit", params={"limit": 1}))["data"][0]
                actor = "root" if caller == "root" else caller.replace(" operator", "-person")
                if newest["actor"] != actor:
                    failures.append(f"{caller}: {method} {template} audited as {newest['actor']!r}")
    assert failures == []


async def test_finance_changes_budgets_and_thresholds_only(gw: Harness) -> None:
    w = await make_world(gw)
    finance = {"authorization": f"Bearer {w.tokens['finance operator']}"}
    account = await w.root("GET", f"/admin/accounts/{w.account_id}")

    renamed = await gw.http.patch(f"/admin/accounts/{w.account_id}", json={"name": "taken-over"}, headers=finance)
    assert renamed.status_code == 403
    assert renamed.json()["error"]["code"] == "forbidden" and "name" in renamed.json()["error"]["message"]
    limited = await gw.http.patch(f"/admin/keys/{w.key_id}", json={"rpm": 5, **BUDGET}, headers=finance)
    assert limited.status_code == 403 and "rpm" in limited.json()["error"]["message"]
    assert (await w.root("GET", f"/admin/keys/{w.key_id}"))["budget"] is None  # nothing of it applied

    # What GET answered, sent back with a new budget and threshold: the unchanged name is no change.
    sent_back = {**account, **BUDGET, "alert_below": "20"}
    patched = await gw.http.patch(f"/admin/accounts/{w.account_id}", json=sent_back, headers=finance)
    assert patched.status_code == 200, patched.text
    assert (patched.json()["budget"]["credits"], patched.json()["alert_below"]) == ("500", "20")
    key = await gw.http.patch(f"/admin/keys/{w.key_id}", json=BUDGET, headers=finance)
    assert key.status_code == 200 and key.json()["budget"]["period"] == "month"


async def test_only_admins_read_webhook_secrets(gw: Harness) -> None:
    w = await make_world(gw)
    for caller, shown in (("viewer operator", False), ("finance operator", False), ("admin operator", True)):
        headers = {"authorization": f"Bearer {w.tokens[caller]}"}
        one = (await gw.http.get(f"/admin/accounts/{w.account_id}", headers=headers)).json()
        listed = (await gw.http.get("/admin/accounts", headers=headers)).json()["data"]
        secrets = {one["webhook_secret"], *(a["webhook_secret"] for a in listed)}
        if shown:
            assert None not in secrets and all(s.startswith("whsec_") for s in secrets), caller
        else:
            assert secrets == {None}, caller
    # Granting credits answers with the account too: finance still does not see the secret.
    granted = await gw.http.post(
        f"/admin/accounts/{w.account_id}/credits",
        json={"amount": "5", "note": "top-up"},
        headers={"authorization": f"Bearer {w.tokens['finance operator']}"},
    )
    assert granted.status_code == 200 and granted.json()["webhook_secret"] is None


async def test_a_gateway_key_is_told_it_is_not_an_admin_token(gw: Harness) -> None:
    _, key = await gw.account_with_key()
    refused = await gw.http.get("/admin/accounts", headers={"authorization": f"Bearer {key}"})
    assert refused.status_code == 401
    assert "gateway key" in refused.json()["error"]["message"]


async def test_operator_tokens_are_shown_once_and_work_at_once(gw: Harness) -> None:
    created = await gw.admin("POST", "/admin/operators", json={"name": "dana", "role": "viewer"})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("igwop_") and set(created.json()) == {"id", "name", "role", "token", "created_at"}
    listed = (await gw.admin("GET", "/admin/operators")).text
    assert token not in listed and "dana" in listed
    assert (await gw.http.get("/admin/models", headers={"authorization": f"Bearer {token}"})).status_code == 200
    for bad, param in (({"name": "x", "role": "owner"}, "role"), ({"name": "root", "role": "admin"}, "name")):
        refused = await gw.admin("POST", "/admin/operators", json=bad)
        assert (refused.status_code, refused.json()["error"]["param"]) == (400, param), refused.text
    duplicate = await gw.admin("POST", "/admin/operators", json={"name": "dana", "role": "admin"})
    assert duplicate.status_code == 409
    # Revoked by name as well as by id.
    assert (await gw.admin("DELETE", "/admin/operators/dana")).json()["revoked_at"] is not None


async def test_a_revoked_operator_is_refused_here_at_once_and_elsewhere_within_the_ttl(
    settings: Settings, tmp_path: Path
) -> None:
    ttl = 0.5
    settings = settings.model_copy(update={"cache_ttl_s": ttl})
    async with running_app(settings) as here, running_app(settings) as there:
        created = await here.admin("POST", "/admin/operators", json={"name": "erin", "role": "admin"})
        headers = {"authorization": f"Bearer {created.json()['token']}"}
        assert (await here.http.get("/admin/keys", headers=headers)).status_code == 200
        assert (await there.http.get("/admin/keys", headers=headers)).status_code == 200  # now cached there
        assert (await here.admin("DELETE", f"/admin/operators/{created.json()['id']}")).status_code == 200
        assert (await here.http.get("/admin/keys", headers=headers)).status_code == 401
        await asyncio.sleep(ttl + 0.2)
        assert (await there.http.get("/admin/keys", headers=headers)).status_code == 401


async def test_without_a_root_token_operators_cannot_sign_in_either(settings: Settings) -> None:
    async with running_app(settings) as gw:
        token = (await gw.admin("POST", "/admin/operators", json={"name": "fay", "role": "admin"})).json()["token"]
    async with running_app(settings.model_copy(update={"admin_token": None})) as off:
        refused = await off.http.get("/admin/models", headers={"authorization": f"Bearer {token}"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "admin_disabled")
