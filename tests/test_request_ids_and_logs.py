"""One gateway id per request, everywhere an operator or finance looks (answer, header, usage
export, ledger, log lines, task); the caller's own id beside it; and the log lines an operator
reads: one access line per request, one per admin change, one at start."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.support.fakes.channels import Upstreams, ok
from tests.support.fakes.upstream import FakeUpstream
from tests.support.harness import Harness, running_app
from tests.support.logs import from_logger, json_log_lines, parsed
from tests.support.processes import cli, gateway_env, serving

ACCESS_FIELDS = {
    "request_id", "client_request_id", "method", "route", "status", "error_code", "account_id", "account_name",
    "key_prefix", "model", "channel", "images", "credits", "latency_ms",
}  # fmt: skip


@pytest.fixture
async def logged(settings: Settings) -> AsyncIterator[tuple[Harness, io.StringIO]]:
    fast_tasks = settings.model_copy(update={"worker_poll_s": 0.05})
    with json_log_lines() as lines:
        async with running_app(fast_tasks) as gw:
            yield gw, lines


def _auth(key: str, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **headers}


def _only(records: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(records) == 1, records
    return records[0]


async def test_one_id_in_the_answer_header_usage_export_ledger_and_log_lines(
    logged: tuple[Harness, io.StringIO],
) -> None:
    gw, lines = logged
    account_id, key = await gw.account_with_key(credits=100)
    response = await gw.http.post(
        "/v1/images/generations",
        json={"prompt": "a fox"},
        headers=_auth(key, **{"x-client-request-id": "order-42 / retry 1"}),
    )
    assert response.status_code == 200, response.text
    request_id = response.json()["id"]
    assert request_id.startswith("req_")
    assert response.headers["x-request-id"] == request_id
    assert response.headers["x-client-request-id"] == "order-42 / retry 1"

    row = _only([r for r in await gw.usage_rows() if r["request_id"] == request_id])
    assert row["client_request_id"] == "order-42 / retry 1"
    ledger = (await gw.admin("GET", f"/admin/accounts/{account_id}/ledger")).json()["data"]
    assert [e["request_id"] for e in ledger if e["kind"] == "charge"] == [request_id]

    mine = [r for r in parsed(lines.getvalue()) if r.get("request_id") == request_id]
    access = _only([r for r in mine if r["logger"] == "app.access"])
    assert access["client_request_id"] == "order-42 / retry 1"
    every_request = [r["request_id"] for r in from_logger(lines, "app.access")]
    assert len(every_request) == len(set(every_request))  # one line per request, each its own id


async def test_a_callers_x_request_id_is_kept_beside_the_gateway_id_not_instead_of_it(gw: Harness) -> None:
    _, key = await gw.account_with_key(credits=100)
    response = await gw.http.post(
        "/v1/images/generations", json={"prompt": "x"}, headers=_auth(key, **{"x-request-id": "myreq-123"})
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == response.json()["id"] != "myreq-123"
    assert response.headers["x-client-request-id"] == "myreq-123"
    row = _only([r for r in await gw.usage_rows() if r["request_id"] == response.json()["id"]])
    assert row["client_request_id"] == "myreq-123"


@pytest.mark.parametrize(
    "sent",
    [b"x" * 129, b"tab\there", b"bell\x07", b"caf\xc3\xa9", b"\xff\xfe"],
    ids=["too-long", "tab", "control", "utf8", "latin1"],
)
async def test_an_unusable_client_id_is_ignored_not_refused(gw: Harness, sent: bytes) -> None:
    _, key = await gw.account_with_key(credits=100)
    for header in ("x-client-request-id", "x-request-id"):
        headers = [(b"authorization", f"Bearer {key}".encode()), (header.encode(), sent)]
        response = await gw.http.post("/v1/images/generations", json={"prompt": "x"}, headers=headers)
        assert response.status_code == 200, response.text
        assert "x-client-request-id" not in response.headers
        assert response.headers["x-request-id"] == response.json()["id"]
    assert {row["client_request_id"] for row in await gw.usage_rows()} == {""}


async def test_a_128_character_client_id_is_kept_and_also_on_an_error(gw: Harness) -> None:
    longest = "k" * 128
    _, key = await gw.account_with_key(credits=1)  # less than one image costs: 402
    response = await gw.http.post(
        "/v1/images/generations", json={"prompt": "x"}, headers=_auth(key, **{"x-client-request-id": longest})
    )
    assert response.status_code == 402, response.text
    assert response.headers["x-client-request-id"] == longest
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]


async def test_a_queued_request_answers_202_with_location_and_its_id_is_the_tasks_request_id(
    logged: tuple[Harness, io.StringIO],
) -> None:
    gw, lines = logged
    _, key = await gw.account_with_key(credits=100)
    submitted = await gw.http.post(
        "/v1/images/generations",
        json={"prompt": "x", "async": True},
        headers=_auth(key, **{"x-client-request-id": "batch-7"}),
    )
    assert submitted.status_code == 202, submitted.text
    task = submitted.json()
    assert submitted.headers["location"] == f"/v1/tasks/{task['id']}"
    assert submitted.headers["x-request-id"] == task["request_id"]
    assert submitted.headers["x-client-request-id"] == "batch-7"

    deadline = time.monotonic() + 15
    while (polled := (await gw.http.get(submitted.headers["location"], headers=_auth(key))).json())["status"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline, polled
        await asyncio.sleep(0.05)
    assert (polled["status"], polled["request_id"]) == ("succeeded", task["request_id"])
    row = _only([r for r in await gw.usage_rows() if r["request_id"] == task["request_id"]])
    assert (row["status"], row["client_request_id"]) == ("succeeded", "batch-7")
    # The submission's access line has the same id.
    submit_line = _only([r for r in from_logger(lines, "app.access") if r["request_id"] == task["request_id"]])
    assert submit_line["status"] == 202


async def test_the_access_line_names_caller_model_channel_and_cost_for_a_200_and_a_402(
    logged: tuple[Harness, io.StringIO],
) -> None:
    gw, lines = logged
    account = await gw.create_account(credits=100, name="team-x")
    key = await gw.create_key(account["id"])
    poor = await gw.create_account(credits=1, name="team-poor")
    poor_key = await gw.create_key(poor["id"])

    served = await gw.generate(key, {"prompt": "x", "n": 2})
    refused = await gw.generate(poor_key, {"prompt": "x"})
    assert (served.status_code, refused.status_code) == (200, 402)

    access = {r["request_id"]: r for r in from_logger(lines, "app.access")}
    ok_line, refused_line = access[served.headers["x-request-id"]], access[refused.headers["x-request-id"]]
    assert set(ok_line) >= ACCESS_FIELDS
    assert set(refused_line) >= ACCESS_FIELDS
    assert ok_line["level"] == "info"
    assert {k: ok_line[k] for k in ACCESS_FIELDS - {"request_id", "latency_ms"}} == {
        "client_request_id": None,
        "method": "POST",
        "route": "/v1/images/generations",
        "status": 200,
        "error_code": None,
        "account_id": account["id"],
        "account_name": "team-x",
        "key_prefix": key[:12],
        "model": "imagen4",
        "channel": "local",
        "images": 2,
        "credits": "16",
    }
    assert isinstance(ok_line["latency_ms"], int)
    assert {k: refused_line[k] for k in ("status", "error_code", "account_name", "model", "channel", "credits")} == {
        "status": 402,
        "error_code": "insufficient_credits",
        "account_name": "team-poor",
        "model": "imagen4",
        "channel": None,
        "credits": None,
    }


async def test_probes_log_at_debug_and_a_bad_key_at_info_without_account(logged: tuple[Harness, io.StringIO]) -> None:
    gw, lines = logged
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await gw.http.get(path)).status_code == 200
    refused = await gw.http.get("/v1/tasks/task_x?key=nope", headers={"authorization": "Bearer igw_wrong"})
    assert refused.status_code == 401
    access = from_logger(lines, "app.access")
    levels = {r["route"]: r["level"] for r in access}
    assert {levels["/healthz"], levels["/readyz"], levels["/metrics"]} == {"debug"}
    unauthorized = _only([r for r in access if r["status"] == 401])
    assert unauthorized["level"] == "info"
    assert unauthorized["route"] == "/v1/tasks/{task_id}"  # the template: no id, no query string
    assert (unauthorized["error_code"], unauthorized["account_id"]) == ("invalid_api_key", None)


async def test_each_admin_change_is_one_info_line(logged: tuple[Harness, io.StringIO]) -> None:
    gw, lines = logged
    account = await gw.create_account(credits=10)
    local = await gw.local_channel()
    patched = await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"priority": 3})
    refused = await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"priority": "high"})
    assert (patched.status_code, refused.status_code) == (200, 400)
    await gw.admin("GET", "/admin/channels")  # a read is no change

    changes = from_logger(lines, "app.admin")
    assert [(c["method"], c["route"], c["entity_id"], c["actor"], c["status"], c["level"]) for c in changes] == [
        ("POST", "/admin/accounts", account["id"], "root", 201, "info"),
        ("PATCH", "/admin/channels/{channel_id}", local["id"], "root", 200, "info"),
    ]
    assert changes[1]["request_id"] == patched.headers["x-request-id"]


async def test_startup_says_what_is_configured_and_warns_while_only_local_serves(
    settings: Settings, upstream: FakeUpstream
) -> None:
    with json_log_lines() as lines:
        async with running_app(settings) as gw:
            await Upstreams(upstream).channel(gw, "real", ok)
    started = _only([r for r in from_logger(lines, "app.startup") if r["level"] == "info"])
    assert started["message"] == "gateway started"
    assert started["channels"] == [{"name": "local", "provider": "local"}]
    assert (started["admin_api"], started["docs"]) == ("on", "/docs")
    assert started["database"].split("://")[0] == settings.database_url.split("://")[0]
    warning = _only([r for r in from_logger(lines, "app.startup") if r["level"] == "warning"])
    assert "placeholder" in warning["message"]

    with json_log_lines() as lines:
        async with running_app(settings.model_copy(update={"admin_token": None})):
            pass
    started = _only(from_logger(lines, "app.startup"))  # a real channel serves now: no warning
    assert {c["name"] for c in started["channels"]} == {"local", "real"}
    assert started["admin_api"].startswith("off")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_log_level_warning_drops_access_lines_and_a_bad_level_is_refused(database_url: str, tmp_path: Path) -> None:
    env = gateway_env(database_url, tmp_path / "data")
    refused = cli({**env, "GATEWAY_LOG_LEVEL": "LOUD"}, "serve", check=False)
    assert refused.returncode == 2
    assert "GATEWAY_LOG_LEVEL" in refused.stderr
    assert cli({**env, "GATEWAY_LOG_LEVEL": "verbose"}, "worker", check=False).returncode == 2

    for level, access_expected in (("WARNING", False), ("info", True)):
        log_path = tmp_path / f"{level}.log"
        with serving({**env, "GATEWAY_LOG_LEVEL": level}, log_path=log_path) as base_url:
            assert httpx.get(f"{base_url}/v1/models").status_code == 401
        records = parsed("\n".join(line for line in log_path.read_text().splitlines() if line.startswith("{")))
        access = [r for r in records if r["logger"] == "app.access"]
        assert [r["route"] for r in access] == (["/v1/models"] if access_expected else [])
        startup = {r["level"] for r in records if r["logger"] == "app.startup"}
        assert startup == ({"info", "warning"} if access_expected else {"warning"})
