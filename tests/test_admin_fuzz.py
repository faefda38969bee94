"""Schemathesis over the admin API: generated requests, valid and invalid, never get a 5xx.

Schemathesis generates the cases from the app's own /openapi.json; they are sent through the test
client to the real app on a migrated database (both backends), with the admin token. Half of the
cases aim at rows that exist (an account, a key, a model, a channel), or every PATCH and ledger
read would stop at a 404 before it reaches the database. The budget is small so this stays fast;
a failure lists the requests that got a 5xx.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.core.result import Err

from tests.support.harness import ADMIN_TOKEN, Harness

# Per operation, generation mode and id choice (~200 requests); ADMIN_FUZZ_EXAMPLES=200 digs deeper.
EXAMPLES = int(os.environ.get("ADMIN_FUZZ_EXAMPLES", "6"))
BASE_URL = "http://gateway.test"
AdminCase = Case[Any]


def _collect(strategy: Any, into: list[AdminCase]) -> None:
    @settings(
        max_examples=EXAMPLES,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @given(strategy)
    def draw(case: AdminCase) -> None:
        into.append(case)

    with contextlib.suppress(Unsatisfiable):  # an operation without parameters has nothing to make invalid
        draw()


def admin_cases(document: dict[str, Any], existing: dict[str, str]) -> list[AdminCase]:
    schema = schemathesis.openapi.from_dict(document).include(path_regex="^/admin/")
    cases: list[AdminCase] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # /openapi.json itself is broken
        operation = result.ok()
        names = [p.name for p in operation.path_parameters]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _collect(operation.as_strategy(generation_mode=mode), cases)
            if names:
                known = {name: existing[name] for name in names}
                _collect(operation.as_strategy(generation_mode=mode, path_parameters=known), cases)
    return cases


async def _send(gw: Harness, request: dict[str, Any]) -> int:
    headers = {k: v for k, v in request["headers"].items() if k.lower() not in ("connection", "accept-encoding")}
    headers["authorization"] = f"Bearer {ADMIN_TOKEN}"
    body: dict[str, Any] = {}
    if "json" in request:
        body["json"] = request["json"]
    elif request.get("data") is not None:
        data = request["data"]
        body["content"] = data.encode() if isinstance(data, str) else data
    response = await gw.http.request(
        request["method"], request["url"], params=request.get("params"), headers=headers, **body
    )
    await response.aread()
    return response.status_code


def _describe(request: dict[str, Any]) -> str:
    body = request.get("json", request.get("data"))
    return f"{request['method']} {request['url']} params={request.get('params')} body={body!r}"[:600]


async def test_generated_admin_requests_never_get_a_5xx(gw: Harness) -> None:
    account = await gw.create_account(credits=100)
    key = await gw.create_key(account["id"])
    key_id = (await gw.admin("GET", "/admin/keys")).json()["data"][0]["id"]
    operator = await gw.admin("POST", "/admin/operators", json={"name": "fuzzed", "role": "viewer"})
    existing = {
        "account_id": account["id"],
        "key_id": key_id,
        "model_id": "imagen4",
        "channel_id": (await gw.local_channel())["id"],
        "request_id": (await gw.generate(key, {"prompt": "x"})).json()["id"],
        "operator_id": operator.json()["id"],
    }
    document = (await gw.http.get("/openapi.json")).json()
    failures = []
    for case in admin_cases(document, existing):
        request = case.as_transport_kwargs(base_url=BASE_URL)
        try:
            status = await _send(gw, request)
        except Exception as exc:  # the app raised: a real client would have got a 500
            failures.append(f"raised {type(exc).__name__}: {_describe(request)}")
            continue
        if status >= 500:
            failures.append(f"{status}: {_describe(request)}")
    assert failures == [], "\n".join(failures)
