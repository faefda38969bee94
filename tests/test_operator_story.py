"""Issue 16's operator story, played end to end as a new operator would, on both databases: named
operators and their roles with every change in the audit log; a price changed without breaking
clients; the command line by names; a channel tested before it takes traffic, then disabled by
itself when its upstream key is revoked; config as code; and a team helping itself. Last, every
`image-gateway` command and option the README, docker/README.md and docs/config.md show exists.

Only the real HTTP API, the real command line (in this process, and as a subprocess where the real
stdout is the point) and fake upstreams on 127.0.0.1; each chapter checks what an operator or a
team would see."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import io
import json
import os
import re
import shlex
import subprocess
from collections.abc import AsyncIterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app.cli import build_parser, main
from app.settings import Settings
from tests.support.fakes.channels import Upstreams, ok, status
from tests.support.fakes.upstream import FakeUpstream
from tests.support.harness import Harness, running_app
from tests.support.processes import gateway_command, gateway_env
from tests.support.receivers import Receiver, receiver

STANDARD = "imagen-4.0-generate-001"  # imagen4's alias, and the upstream model the channels map it to
CLI_ACTOR = f"cli:{getpass.getuser()}"


@dataclass
class Story:
    gw: Harness
    ups: Upstreams
    env: dict[str, str]  # the environment `image-gateway` runs in: the same database

    async def cli(self, *args: str, expect: int = 0) -> Any:
        """`image-gateway ARGS | …`: stdout is a pipe, so the answer is JSON."""
        code, out, err = await asyncio.to_thread(_run_cli, self.env, *args)
        assert code == expect, f"image-gateway {' '.join(args)} exited {code}: {err}"
        assert "Traceback" not in err, err
        # The command wrote to the database, not through this process: drop what it cached (a
        # replica sees the change within GATEWAY_CACHE_TTL_S anyway).
        self.gw.gateway.invalidate_caches()
        return json.loads(out) if out.strip().startswith(("{", "[")) else out

    async def channel(self, name: str) -> dict[str, Any]:
        listed = (await self.gw.admin("GET", "/admin/channels")).json()["data"]
        found: dict[str, Any] = next(c for c in listed if c["name"] == name)
        return found

    async def model(self, model_id: str) -> dict[str, Any]:
        listed = (await self.gw.admin("GET", "/admin/models")).json()["data"]
        found: dict[str, Any] = next(m for m in listed if m["id"] == model_id)
        return found

    async def audit(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.gw.admin("GET", "/admin/audit", params=params)
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()["data"]
        return entries


def _run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()  # not a terminal: JSON, as in a pipe
    with pytest.MonkeyPatch.context() as mp, redirect_stdout(out), redirect_stderr(err):
        for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
            mp.delenv(name)
        for name, value in env.items():
            if name.startswith("GATEWAY_"):
                mp.setenv(name, value)
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
async def story(settings: Settings, database_url: str, tmp_path: Path, upstream: FakeUpstream) -> AsyncIterator[Story]:
    quick = {
        "worker_poll_s": 0.05,
        "callback_retry_base_s": 0.2,
        "callback_allow_networks": "127.0.0.0/8",
        "auto_disable_after": 2,  # GATEWAY_AUTO_DISABLE_AFTER, not only its default (3), is what counts
    }
    async with running_app(settings.model_copy(update=quick)) as gw:
        yield Story(gw, Upstreams(upstream), gateway_env(database_url, tmp_path / "data"))


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# --- 1. named operators, roles, the audit log ------------------------------------------------------


async def test_finance_grants_and_budgets_a_viewer_reads_and_the_audit_log_names_them(story: Story) -> None:
    gw = story.gw
    tokens = {}
    for name, role in (("finance", "finance"), ("viewer", "viewer")):
        created = await gw.admin("POST", "/admin/operators", json={"name": name, "role": role})
        assert created.status_code == 201, created.text
        assert created.json()["role"] == role and created.json()["token"].startswith("igwop_")
        tokens[name] = created.json()["token"]
    design = await gw.create_account(100, name="design")
    google = await story.ups.channel(gw, "google-a", ok)

    async def as_(who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await gw.http.request(method, path, headers=_bearer(tokens[who]), **kwargs)

    # Finance grants credits and sets a budget…
    granted = await as_(
        "finance", "POST", f"/admin/accounts/{design['id']}/credits", json={"amount": "500", "note": "Q4"}
    )
    assert granted.status_code == 200, granted.text
    assert granted.json()["balance"] == "600" and granted.json()["webhook_secret"] is None
    budgeted = await as_(
        "finance", "PATCH", f"/admin/accounts/{design['id']}", json={"budget": {"credits": "300", "period": "month"}}
    )
    assert budgeted.status_code == 200, budgeted.text
    assert budgeted.json()["budget"]["credits"] == "300"
    # …but may not re-route traffic or change a price, whether or not the object exists.
    for method, path, body in (
        ("PATCH", f"/admin/channels/{google['id']}", {"enabled": False}),
        ("PATCH", "/admin/channels/ch_nobody", {"enabled": False}),
        ("PATCH", "/admin/models/imagen4", {"credits_per_image": "1"}),
    ):
        refused = await as_("finance", method, path, json=body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden" and "admin role" in refused.json()["error"]["message"]
    renamed = await as_("finance", "PATCH", f"/admin/accounts/{design['id']}", json={"name": "finance-owned"})
    assert renamed.status_code == 403 and "name" in renamed.json()["error"]["message"], renamed.text
    assert (await story.channel("google-a"))["enabled"] is True
    assert (await story.model("imagen4"))["credits_per_image"] == "8"

    # The viewer reads everything, changes nothing, and never sees a webhook secret.
    listed = await as_("viewer", "GET", "/admin/accounts")
    assert listed.status_code == 200 and [a["name"] for a in listed.json()["data"]] == ["design"]
    assert [a["webhook_secret"] for a in listed.json()["data"]] == [None]
    shown = await as_("viewer", "GET", f"/admin/accounts/{design['id']}")
    assert shown.json()["balance"] == "600" and shown.json()["webhook_secret"] is None
    assert design["webhook_secret"] not in (await as_("viewer", "GET", "/admin/audit")).text
    for path in ("/admin/channels", "/admin/keys", "/admin/models", "/admin/usage", "/admin/operators"):
        read = await as_("viewer", "GET", path)
        assert read.status_code == 200, read.text
        assert "key-google-a" not in read.text and "whsec_" not in read.text
    assert (await as_("viewer", "GET", "/admin/usage/export")).status_code == 403  # exports are finance's
    assert (await as_("finance", "GET", "/admin/usage/export")).status_code == 200
    for method, path, body in (
        ("POST", f"/admin/accounts/{design['id']}/credits", {"amount": "1"}),
        ("PATCH", f"/admin/accounts/{design['id']}", {"alert_below": "5"}),
        ("POST", "/admin/operators", {"name": "mallory", "role": "admin"}),
    ):
        assert (await as_("viewer", method, path, json=body)).status_code == 403
    assert (await gw.account(design["id"]))["webhook_secret"].startswith("whsec_")  # the root (admin) sees it

    # Every change, with its actor and each field before and after; secrets as "***"; refusals left out.
    grant, budget = reversed(await story.audit(actor="finance"))
    assert (grant["action"], grant["entity"], grant["entity_id"]) == ("grant", "account", design["id"])
    assert grant["changes"]["balance"] == ["100", "600"] and grant["changes"]["note"] == [None, "Q4"]
    assert (budget["action"], budget["entity_id"]) == ("update", design["id"])
    assert budget["changes"] == {"budget_credits": [None, "300"], "budget_period": [None, "month"]}
    assert await story.audit(actor="viewer") == []
    by_root = {(e["entity"], e["action"]): e["changes"] for e in await story.audit(actor="root")}
    assert by_root[("account", "create")]["webhook_secret"] == [None, "***"]
    assert by_root[("channel", "create")]["auth"] == [None, "***"]
    assert by_root[("operator", "create")]["token_hash"] == [None, "***"]
    everything = (await gw.admin("GET", "/admin/audit")).text
    assert "key-google-a" not in everything and design["webhook_secret"] not in everything


# --- 2. a price change that breaks no client ------------------------------------------------------


async def test_a_price_patch_keeps_the_google_relay_and_2k_working_and_charges_the_new_price(story: Story) -> None:
    gw = story.gw
    await story.ups.channel(gw, "google-a", ok)
    account_id, key = await gw.account_with_key(credits=100)

    # The operator's first try, a PUT with only the price, is refused and changes nothing.
    naive = await gw.admin("PUT", "/admin/models/imagen4", json={"credits_per_image": "10", "multiplier": "1.25"})
    assert naive.status_code == 400, naive.text
    message = naive.json()["error"]["message"]
    assert "missing fields" in message
    assert all(field in message for field in ("aliases", "image_sizes", "parameters"))

    patched = await gw.admin("PATCH", "/admin/models/imagen4", json={"credits_per_image": "10", "multiplier": "1.25"})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["aliases"], patched.json()["image_sizes"]) == ([STANDARD], ["1K", "2K"])

    relay = await gw.http.post(
        f"/v1beta/models/{STANDARD}:predict",  # what the google-genai SDK posts, by the alias
        json={"instances": [{"prompt": "a lighthouse"}], "parameters": {"sampleCount": 1, "sampleImageSize": "2K"}},
        headers={"x-goog-api-key": key},
    )
    assert relay.status_code == 200, relay.text
    assert len(relay.json()["predictions"]) == 1
    assert story.ups.fake.requests[-1].json["parameters"]["sampleImageSize"] == "2K"
    unified = await gw.generate(key, {"prompt": "a lighthouse", "image_size": "2K"})
    assert unified.status_code == 200, unified.text
    assert unified.json()["billing"]["credits"] == "12.5"  # 10 × 1.25
    assert (await gw.account(account_id))["balance"] == "75"

    (change,) = await story.audit(entity="model", entity_id="imagen4")
    assert (change["actor"], change["action"]) == ("root", "update")
    assert change["changes"] == {"credits_per_image": ["8", "10"], "multiplier": ["1", "1.25"]}


# --- 3. the command line, by names ---------------------------------------------------------------


async def test_the_command_line_works_by_names_prints_json_in_a_pipe_and_a_closed_pipe_undoes_nothing(
    story: Story,
) -> None:
    gw = story.gw
    await story.ups.channel(gw, "google-a", ok)
    await story.ups.channel(gw, "google-b", ok, priority=10)
    design = await gw.create_account(0, name="design")

    moved = await story.cli("channels", "update", "google-a", "--priority", "20")
    assert (moved["name"], moved["priority"]) == ("google-a", 20)
    assert (await story.cli("accounts", "grant", "design", "500", "--note", "Q4"))["balance"] == "500"
    created = await story.cli(
        "keys", "create", "--account", "design", "--name", "ci", "--rpm", "60", "--max-concurrency", "2"
    )
    assert (created["account_id"], created["rpm"], created["max_concurrency"]) == (design["id"], 60, 2)
    assert created["key"].startswith("igw_")

    # The team's new key works, on the channel the CLI moved up, and shows its rpm.
    served = await gw.generate(created["key"], {"prompt": "a fox"})
    assert served.status_code == 200, served.text
    assert served.headers["x-ratelimit-limit-requests"] == "60"
    assert served.headers["x-ratelimit-remaining-requests"] == "59"
    assert (story.ups.calls("google-a"), story.ups.calls("google-b")) == (1, 0)
    assert (await gw.account(design["id"]))["balance"] == "492"

    # `image-gateway channels disable google-a | head -0`: the reader is gone before the command prints.
    process = await asyncio.to_thread(
        subprocess.Popen,
        [*gateway_command(), "channels", "disable", "google-a"],
        env=story.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    stderr = (await asyncio.to_thread(process.stderr.read)).decode()
    assert await asyncio.to_thread(process.wait, 60) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    gw.gateway.invalidate_caches()
    assert (await story.channel("google-a"))["enabled"] is False  # the disable was kept
    assert (await gw.generate(created["key"], {"prompt": "a fox"})).status_code == 200
    assert (story.ups.calls("google-a"), story.ups.calls("google-b")) == (1, 1)  # traffic moved

    changes = [(e["entity"], e["action"], e["changes"]) for e in reversed(await story.audit(actor=CLI_ACTOR))]
    assert changes[0] == ("channel", "update", {"priority": [0, 20]})
    assert changes[1][:2] == ("account", "grant") and changes[1][2]["balance"] == ["0", "500"]
    assert changes[2][:2] == ("key", "create") and changes[2][2]["rpm"] == [None, 60]
    assert changes[3] == ("channel", "update", {"enabled": [True, False]})


# --- 4. a channel tested before traffic, then disabled by itself ----------------------------------


async def test_a_new_channel_is_tested_then_enabled_and_disabled_by_itself_when_its_key_is_revoked(
    story: Story,
) -> None:
    gw = story.gw
    await story.ups.channel(gw, "google-a", ok)
    account_id, key = await gw.account_with_key(credits=1000)
    story.ups.behaviour["google-b"] = ok
    added = await story.cli(
        "channels", "add", "--name", "google-b", "--provider", "google-imagen",
        "--base-url", f"{story.ups.fake.url}/google-b/v1beta", "--api-key", "key-google-b",
        "--models", f"imagen4={STANDARD}", "--priority", "10", "--enabled", "false",
    )  # fmt: skip
    assert (added["enabled"], added["auth"]["api_key_set"]) == (False, True)
    assert "key-google-b" not in json.dumps(added)

    tested = await story.cli("channels", "test", "google-b")
    assert (tested["ok"], tested["http_status"], tested["images"]) == (True, 200, 1)
    assert story.ups.calls("google-b") == 1
    assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
    assert (story.ups.calls("google-a"), story.ups.calls("google-b")) == (1, 1)  # tested, not in service

    await story.cli("channels", "enable", "google-b")
    assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
    assert story.ups.calls("google-b") == 2  # priority 10 takes the traffic now

    # The upstream revokes google-b's key: every call to it is refused, callers fail over.
    story.ups.behaviour["google-b"] = status(401)
    after = gw.settings.auto_disable_after
    for refusals in range(1, after + 1):
        assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
        assert (await story.channel("google-b"))["enabled"] is (refusals < after)
    broken = await story.channel("google-b")
    assert broken["disabled_reason"].startswith(f"upstream answered 401 on {after} calls in a row")
    alerts = (await gw.admin("GET", "/admin/alerts")).json()["data"]
    (alert,) = [a for a in alerts if a["type"] == "channel.disabled"]
    assert alert["data"]["channel_name"] == "google-b" and alert["data"]["reason"] == broken["disabled_reason"]
    listed = [c for c in await story.cli("channels", "list") if c["name"] == "google-b"]
    assert listed[0]["disabled_reason"] == broken["disabled_reason"]

    assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
    assert story.ups.calls("google-b") == 2 + after  # disabled: no more calls
    assert story.ups.calls("google-a") == 2 + after
    # Every request was served, and charged, once.
    assert (await gw.account(account_id))["balance"] == str(1000 - 8 * (3 + after))
    assert await gw.ledger_problems() == []

    # The test tells the operator why, and the channel stays off until someone fixes the key.
    failed = await story.cli("channels", "test", "google-b", expect=1)
    assert (failed["ok"], failed["http_status"]) == (False, 401)
    assert "credentials" in failed["error"] and "key-google-b" not in failed["error"]


# --- 5. config as code ---------------------------------------------------------------------------

CONFIG = """\
models:
  - id: imagen4
    credits_per_image: "9"
channels:
  - name: google-c
    provider: google-imagen
    base_url: {url}/google-c/v1beta
    auth: {{api_key_env: GOOGLE_C_KEY}}
    models: {{imagen4: imagen-4.0-generate-001}}
    costs: {{imagen-4.0-generate-001: "0.04"}}
    priority: 5
operators:
  - name: auditor
    role: viewer
"""


async def test_a_config_file_applies_once_and_the_export_round_trips(story: Story, tmp_path: Path) -> None:
    gw = story.gw
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG.format(url=story.ups.fake.url))

    first = await story.cli("config", "apply", str(path))
    assert first["changed"] == 3
    assert {(r["kind"], r["name"], r["action"]) for r in first["results"]} == {
        ("model", "imagen4", "updated"),
        ("channel", "google-c", "created"),
        ("operator", "auditor", "created"),
    }
    (auditor,) = [r for r in first["results"] if r["name"] == "auditor"]
    assert (await gw.http.get("/admin/channels", headers=_bearer(auditor["token"]))).status_code == 200
    again = await story.cli("config", "apply", str(path))
    assert again["changed"] == 0 and {r["action"] for r in again["results"]} == {"unchanged"}

    # What an operator and a team now see.
    model = await story.model("imagen4")
    assert (model["credits_per_image"], model["aliases"], model["image_sizes"]) == ("9", [STANDARD], ["1K", "2K"])
    channel = await story.channel("google-c")
    assert (channel["priority"], channel["auth"]) == (5, {"api_key_env": "GOOGLE_C_KEY", "api_key_set": False})
    assert {e["entity"] for e in await story.audit(actor=CLI_ACTOR)} == {"model", "channel", "operator"}

    # The export reads back as the same state: applying it changes nothing, exporting again is identical.
    exported = await story.cli("config", "export")
    assert isinstance(exported, str) and "token" not in exported
    document = yaml.safe_load(exported)
    assert {c["name"] for c in document["channels"]} == {"local", "google-c"}
    assert {o["name"]: o["role"] for o in document["operators"]} == {"auditor": "viewer"}
    exported_path = tmp_path / "exported.yaml"
    exported_path.write_text(exported)
    assert (await story.cli("config", "apply", str(exported_path)))["changed"] == 0
    assert await story.cli("config", "export") == exported


# --- 6. a team helping itself --------------------------------------------------------------------


def _verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


async def _delivered(hook: Receiver) -> tuple[bytes, dict[str, str]]:
    for _ in range(300):
        if hook.requests:
            return hook.requests[0].body, hook.requests[0].headers
        await asyncio.sleep(0.05)
    raise AssertionError("no callback arrived")


async def test_a_team_lists_its_tasks_reads_its_usage_rotates_its_secret_and_sees_its_rate_limit(
    story: Story,
) -> None:
    gw = story.gw
    await story.ups.channel(gw, "google-a", ok)
    _, key = await gw.account_with_key(credits=1000, rpm=5)
    _, stranger = await gw.account_with_key(credits=1000)
    team = _bearer(key)
    hooks: list[Receiver] = []
    hook = await receiver(hooks)
    try:
        account = (await gw.http.get("/v1/account", headers=team)).json()
        old = account["webhook_secret"]
        rotated = await gw.http.post("/v1/account/webhook-secret/rotate", headers=team)
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["webhook_secret"]
        assert new.startswith("whsec_") and new != old
        assert (await gw.http.get("/v1/account", headers=team)).json()["webhook_secret"] == new

        synced = await gw.generate(key, {"prompt": "a fox", "n": 2})
        assert synced.status_code == 200, synced.text
        submitted = await gw.generate(key, {"prompt": "a hen", "callback_url": f"{hook.url}/done"})
        assert submitted.status_code == 202, submitted.text
        body, headers = await _delivered(hook)
        assert json.loads(body)["status"] == "succeeded"
        assert len(headers["webhook-signature"].split(" ")) == 2
        assert _verifies(new, body, headers) and _verifies(old, body, headers)  # the receiver may lag a day
        assert (await gw.generate(stranger, {"prompt": "theirs", "async": True})).status_code == 202

        tasks = await gw.http.get("/v1/tasks", headers=team)
        assert tasks.status_code == 200, tasks.text
        assert [t["id"] for t in tasks.json()["data"]] == [submitted.json()["id"]]  # theirs never
        assert tasks.json()["data"][0]["status"] == "succeeded"

        usage = await gw.http.get("/v1/usage", params={"group_by": "model"}, headers=team)
        assert usage.status_code == 200, usage.text
        assert usage.json()["rows"] == [{"model": "imagen4", "requests": 2, "images": 3, "credits": "24"}]

        # Two generations spent two of the key's five a minute; reads only report where it stands.
        for answer in (tasks, usage, await gw.http.get("/v1/models", headers=team)):
            assert answer.headers["x-ratelimit-limit-requests"] == "5"
            assert answer.headers["x-ratelimit-remaining-requests"] == "3"
            assert answer.headers["x-ratelimit-reset-requests"].endswith("s")
        assert "x-ratelimit-limit-requests" not in (await gw.http.get("/v1/models", headers=_bearer(stranger))).headers
    finally:
        for started in hooks:
            await started.stop()


# --- 7. what the documents tell an operator to type exists -----------------------------------------

ROOT = Path(__file__).resolve().parent.parent
# A command line in a code block: `image-gateway …`, also after `.venv/bin/`, `docker exec igw`,
# `docker compose … exec api-1` or an environment assignment.
COMMAND = re.compile(r"^(?:\S+=\S+\s+)*(?:\.venv/bin/|docker (?:compose )?.*\bexec\s.*?)?image-gateway\s+(.*)$")


def documented_lines() -> list[tuple[str, str]]:
    """Every `image-gateway …` line of the documents' code blocks, without the program's name, with
    its continuation lines (`\\`, or a synopsis's indented `[--option …]`) joined to it."""
    found: list[tuple[str, str]] = []
    for name in ("README.md", "docker/README.md", "docs/config.md"):
        text = (ROOT / name).read_text()
        for block in re.findall(r"```\w*\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                command = line.split("  #", 1)[0].strip()
                matched = COMMAND.match(command)
                if matched:
                    found.append((name, matched.group(1)))
                elif found and line.startswith("  ") and command.startswith("["):
                    found[-1] = (found[-1][0], f"{found[-1][1]} {command}")
    return found


def is_synopsis(command: str) -> bool:
    """Syntax ([--option N], a | b), not a command to run."""
    return bool(re.search(r"\[|\s\|\s", command))


def documented_commands() -> list[tuple[str, str]]:
    return [(name, command) for name, command in documented_lines() if not is_synopsis(command)]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (group,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(group.choices)


def test_every_command_the_documents_show_is_one_the_cli_takes() -> None:
    commands = documented_commands()
    walkthrough = {"channels test google-a", "keys create --account design --name ci --rpm 60 --max-concurrency 2"}
    assert walkthrough <= {command for _, command in commands}  # the operator's first day is among them
    parser = build_parser()
    for document, command in commands:
        words = shlex.split(command, comments=True)
        shell = [i for i, word in enumerate(words) if word.startswith((">", "|", "&&", "2>"))]
        try:
            args = parser.parse_args(words[: shell[0]] if shell else words)
        except SystemExit:
            pytest.fail(f"{document}: `image-gateway {command}` is not a command the CLI takes")
        assert hasattr(args, "run"), f"{document}: `image-gateway {command}` names no command"


def test_every_option_the_synopses_show_is_one_the_command_takes() -> None:
    commands = subcommands(build_parser())
    checked = 0
    for document, synopsis in [(n, c) for n, c in documented_lines() if is_synopsis(c)]:
        name, _, rest = synopsis.partition(" ")
        if name not in commands:
            continue
        group = commands[name]
        nested = subcommands(group) if any(isinstance(a, argparse._SubParsersAction) for a in group._actions) else {}
        command = group
        # "accounts create NAME [--credits N] | list | show ACCOUNT": each "| word" is another command
        # of the group ("config apply FILE | config export": the group may be named again).
        for segment in re.split(r"\s\|\s", rest):
            head = segment.removeprefix(f"{name} ").split(" ", 1)[0]
            if nested and re.fullmatch(r"[a-z]+", head):
                assert head in nested, f"{document}: `image-gateway {name} {head}` does not exist"
                command = nested[head]
            for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", segment):
                assert option in command._option_string_actions, (
                    f"{document}: `--{option.lstrip('-')}` is not an option of `image-gateway {name} "
                    f"{command.prog.split()[-1]}`"
                )
                checked += 1
    assert checked > 50  # the synopsis of "Operating it" was read
