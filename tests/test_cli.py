"""The command line as an operator uses it (issue 16, item 3): names or ids everywhere, a table on
a terminal and JSON in a pipe or with --json, keys with their limits, models, clear errors, a
closed pipe that neither undoes a change nor prints a traceback, and a warning when the database
was never migrated. On both databases; in this process (a new one costs seconds on a loaded
machine) except where the real stdout is the point."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.cli import main
from app.cli.database_check import shown_url
from tests.support.databases import POSTGRES_URL
from tests.support.harness import Harness
from tests.support.processes import gateway_command, gateway_env


class Terminal(io.StringIO):
    """Stands in for stdout on a terminal."""

    def isatty(self) -> bool:
        return True


def run(env: dict[str, str], *args: str, terminal: bool = False) -> tuple[int, str, str]:
    """`image-gateway ARGS` in this process, with the gateway's environment and no other."""
    out, err = Terminal() if terminal else io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, redirect_stdout(out), redirect_stderr(err):
        for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
            mp.delenv(name)
        for name, value in env.items():
            if name.startswith("GATEWAY_"):
                mp.setenv(name, value)
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def ok(env: dict[str, str], *args: str) -> Any:
    code, out, err = run(env, *args)
    assert code == 0, err
    assert "warning" not in err, err
    return json.loads(out)


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return gateway_env(database_url, tmp_path / "data")


def test_objects_are_named_by_name_or_id_and_json_goes_to_a_pipe(env: dict[str, str]) -> None:
    account = ok(env, "accounts", "create", "my-team", "--credits", "100")
    assert ok(env, "accounts", "grant", "my-team", "500", "--note", "q4")["balance"] == "600"
    assert ok(env, "accounts", "show", account["id"])["name"] == "my-team"
    ledger = ok(env, "accounts", "ledger", "my-team")
    assert [(e["amount"], e["note"]) for e in ledger["data"]] == [("500", "q4"), ("100", "initial credits")]

    # Channels by name; the change shows in a listing by id.
    local = ok(env, "channels", "update", "local", "--priority", "20", "--models", "imagen4=imagen4,*=*")
    assert local["priority"] == 20 and local["models"] == {"imagen4": "imagen4", "*": "*"}
    assert ok(env, "channels", "show", local["id"])["priority"] == 20
    assert ok(env, "channels", "disable", "local")["enabled"] is False
    assert ok(env, "channels", "enable", local["id"])["enabled"] is True

    # Models by id or alias; an update changes only what it names (aliases and sizes stay).
    assert ok(env, "models", "show", "imagen-4.0-generate-001")["id"] == "imagen4"
    updated = ok(env, "models", "update", "imagen-4.0-generate-001", "--multiplier", "1.25")
    assert updated["multiplier"] == "1.25" and updated["aliases"] == ["imagen-4.0-generate-001"]
    assert "2K" in updated["image_sizes"]
    assert {"imagen4", "imagen4-fast"} <= {m["id"] for m in ok(env, "models", "list")}

    # Keys by id, by prefix, or by name while only one key has it.
    first = ok(env, "keys", "create", "--account", "my-team", "--name", "svc")
    assert ok(env, "keys", "show", first["prefix"])["id"] == first["id"]
    assert ok(env, "keys", "show", "svc")["id"] == first["id"]
    second = ok(env, "keys", "create", "--account", account["id"], "--name", "svc")
    code, _, err = run(env, "keys", "revoke", "svc")
    assert code == 1 and first["id"] in err and second["id"] in err and "Use the key's id" in err
    assert ok(env, "keys", "revoke", second["prefix"])["revoked_at"] is not None
    assert [k["revoked_at"] is None for k in ok(env, "keys", "list", "--account", "my-team")] == [True, False]
    # A whole key that names no key is not echoed back: it is a secret all the same.
    stranger = first["key"][:-4] + ("aaaa" if not first["key"].endswith("aaaa") else "bbbb")
    code, _, err = run(env, "keys", "show", stranger)
    assert code == 1 and "No key with id, prefix or name" in err and stranger not in err

    code, _, err = run(env, "channels", "update", "google-a", "--priority", "20")
    assert code == 1 and "error: No channel with id or name 'google-a'" in err


async def test_a_key_created_with_limits_is_held_to_them(gw: Harness, env: dict[str, str]) -> None:
    await asyncio.to_thread(ok, env, "accounts", "create", "limited", "--credits", "100")
    key = await asyncio.to_thread(
        ok, env, "keys", "create", "--account", "limited", "--name", "svc", "--rpm", "2", "--max-concurrency", "2",
        "--credit-cap", "30", "--expires-at", "2099-01-01", "--budget", "20/day", "--models", "imagen-4.0-generate-001",
    )  # fmt: skip
    assert (key["rpm"], key["max_concurrency"], key["credit_cap"]) == (2, 2, "30")
    assert key["expires_at"].startswith("2099-01-01") and key["budget"]["credits"] == "20"
    assert key["models"] == ["imagen4"]  # the alias stored as the id that requests are checked against

    # Every request counts against the rpm, a refused one too.
    assert (await gw.generate(key["key"], {"model": "imagen4-fast", "prompt": "a cat"})).status_code == 403
    served = await gw.generate(key["key"], {"model": "imagen4", "prompt": "a cat"})
    assert served.status_code == 200
    limited = await gw.generate(key["key"], {"model": "imagen4", "prompt": "a cat"})
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"

    # The request log finds it by the key's prefix, and shows it with its attempts.
    (logged,) = (await asyncio.to_thread(ok, env, "requests", "list", "--key", key["prefix"]))["data"]
    assert logged["id"] == served.json()["id"] and logged["status"] == "succeeded"
    code, shown, _ = await asyncio.to_thread(run, env, "requests", "show", logged["id"], terminal=True)
    assert code == 0 and ["account_name", "limited"] in [line.split() for line in shown.splitlines()]
    assert "attempts:" in shown
    (attempt,) = [line.split() for line in shown.splitlines() if line.startswith("1 ")]
    assert attempt[1:2] == ["local"] and "succeeded" in attempt


def test_a_terminal_gets_tables_without_secrets_except_one_shown_once(env: dict[str, str]) -> None:
    ok(env, "accounts", "create", "my-team", "--credits", "100")
    code, table, _ = run(env, "accounts", "list", terminal=True)
    heading, row = table.splitlines()
    assert code == 0 and heading.split()[:3] == ["ID", "NAME", "BALANCE"] and row.split()[1:3] == ["my-team", "100"]
    assert "whsec_" not in table

    code, shown, _ = run(env, "keys", "create", "--account", "my-team", "--name", "svc", terminal=True)
    assert code == 0 and "shown once" in shown
    (key_line,) = [line for line in shown.splitlines() if line.startswith("key ")]
    assert key_line.split()[1].startswith("igw_")
    listed = run(env, "keys", "list", terminal=True)[1]
    assert "svc" in listed and key_line.split()[1] not in listed

    # --json before or after the command: JSON on a terminal too.
    for args in (["--json", "accounts", "list"], ["accounts", "list", "--json"]):
        code, out, _ = run(env, *args, terminal=True)
        assert code == 0 and json.loads(out)[0]["name"] == "my-team" and "whsec_" not in out


def test_only_show_with_secret_prints_a_webhook_secret(env: dict[str, str]) -> None:
    """Issue 16: `accounts list` printed every team's webhook secret (whoever could read a pasted
    listing could sign callbacks as the gateway for any team)."""
    secret = ok(env, "accounts", "create", "team-a", "--credits", "10")["webhook_secret"]
    other = ok(env, "accounts", "create", "team-b")["webhook_secret"]
    assert secret.startswith("whsec_") and other.startswith("whsec_")

    printed = [
        run(env, "accounts", "list")[1],
        run(env, "accounts", "list", terminal=True)[1],
        run(env, "accounts", "list", "--json", terminal=True)[1],
        run(env, "accounts", "show", "team-a")[1],
        run(env, "accounts", "show", "team-a", terminal=True)[1],
        run(env, "accounts", "grant", "team-a", "5")[1],
        run(env, "accounts", "update", "team-a", "--alert-below", "3")[1],
    ]
    for out in printed:
        assert "team-a" in out and "whsec_" not in out, out
    assert [sorted(a) for a in json.loads(printed[0])] == [sorted(ok(env, "accounts", "show", "team-b"))] * 2
    assert "webhook_secret" not in json.loads(printed[0])[0]

    # On purpose, one team's: in JSON and on a terminal.
    assert ok(env, "accounts", "show", "team-a", "--secret")["webhook_secret"] == secret
    code, table, _ = run(env, "accounts", "show", "team-a", "--secret", terminal=True)
    assert code == 0 and secret in table and other not in table


def test_mistakes_are_named_by_their_option(env: dict[str, str]) -> None:
    code, _, err = run(env, "channels", "update", "local", "--models", "imagen4:gpt-image-1")
    assert code == 2 and "argument --models" in err
    assert "imagen4=imagen-4.0-generate-001" in err and "JSON object" in err and "Expecting value" not in err
    code, _, err = run(env, "channels", "update", "local", "--models", '{"imagen4": ')
    assert code == 2 and "not valid" in err

    ok(env, "accounts", "create", "my-team")
    code, _, err = run(env, "keys", "create", "--account", "my-team", "--rpm", "0")
    assert code == 2 and "--rpm" in err and "Traceback" not in err
    code, _, err = run(env, "keys", "create", "--account", "my-team", "--models", "imagen5")
    assert code == 1 and "No model with id or alias 'imagen5'" in err
    code, _, err = run(env, "keys", "create", "--account", "my-team", "--expires-at", "soon")
    assert code == 2 and "--expires-at" in err
    code, _, err = run(env, "models", "set", "imagen4", "--credits-per-image", "9")
    assert code == 2 and "--aliases" in err and "models update" in err
    assert ok(env, "models", "show", "imagen4")["credits_per_image"] == "8"  # nothing was replaced
    code, _, err = run(env, "keys", "update", "nobody")
    assert code == 2 and "nothing to change" in err


@pytest.fixture
def never_migrated(backend: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a gateway whose database nobody has migrated."""
    data_dir = tmp_path / "elsewhere" / "data"
    if backend == "sqlite":
        yield gateway_env("", data_dir)  # the default: gateway.db in GATEWAY_DATA_DIR, not there yet
        return
    name = f"igw_empty_{secrets.token_hex(4)}"
    asyncio.run(_postgres(f'CREATE DATABASE "{name}"'))
    try:
        url = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
        yield gateway_env(url, data_dir)
    finally:
        asyncio.run(_postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _postgres(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def test_a_database_never_migrated_is_named_and_a_reading_creates_nothing(
    never_migrated: dict[str, str], backend: str, tmp_path: Path
) -> None:
    env = never_migrated
    database = Path(env["GATEWAY_DATA_DIR"]).absolute() / "gateway.db"
    where = f"sqlite+aiosqlite:///{database}" if backend == "sqlite" else shown_url(env["GATEWAY_DATABASE_URL"])

    code, out, err = run(env, "accounts", "list")
    assert code == 1 and out == ""
    assert f"warning: the database at {where} has never been migrated" in err and "image-gateway migrate" in err
    assert not (tmp_path / "elsewhere").exists()  # neither the SQLite file nor its directory

    # A change goes on, migrating it, and says so; then the database is like any other.
    code, out, err = run(env, "accounts", "create", "my-team")
    assert code == 0 and json.loads(out)["name"] == "my-team"
    assert f"the database at {where} has never been migrated; migrating it now" in err
    assert [a["name"] for a in ok(env, "accounts", "list")] == ["my-team"]


def test_the_shown_url_has_no_password() -> None:
    shown = shown_url("postgresql+asyncpg://gateway:s3cret@db.internal:5432/gateway")
    assert "s3cret" not in shown and shown.startswith("postgresql+asyncpg://gateway:***@db.internal:5432/gateway")


def test_a_reader_that_goes_away_undoes_nothing_and_sees_no_traceback(env: dict[str, str]) -> None:
    # `image-gateway channels disable local | head -0`: the pipe is closed before the command
    # prints (it is still starting up), so its first write fails.
    process = subprocess.Popen(
        [*gateway_command(), "channels", "disable", "local"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    (local,) = [c for c in ok(env, "channels", "list") if c["name"] == "local"]
    assert local["enabled"] is False


def test_a_real_terminal_gets_a_table(env: dict[str, str]) -> None:
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [*gateway_command(), "models", "list"], env=env, stdout=follower, stderr=subprocess.PIPE
        )
        os.close(follower)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command is done
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) == 0
    finally:
        os.close(leader)
    lines = b"".join(chunks).decode().replace("\r\n", "\n").splitlines()
    assert lines[0].split()[:3] == ["ID", "CREDITS", "MULTIPLIER"]
    (imagen4,) = [line.split() for line in lines if line.startswith("imagen4 ")]
    assert imagen4[1:4] == ["8", "1", "imagen-4.0-generate-001"]
