"""The Dockerfile, docker/compose.yaml and the Makefile agree with the code they run.

There is no container engine on the test machine, so the files are read, and every command they
run is checked against the CLI's own parser; then the gateway is started exactly as the image
starts it, and the worker's healthcheck is run as compose runs it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.engine import make_url

from app.cli import build_parser
from app.cli.processes import cmd_serve, cmd_worker
from app.main import create_app
from app.settings import Settings
from tests.support.databases import REDIS_URL
from tests.support.processes import free_port, gateway_command, stop, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker" / "compose.yaml"
GATEWAY_IMAGE = "image-gateway:local"
# Superuser-reserved PostgreSQL connections (the server's default), and what is left free for
# `exec … image-gateway …` commands, healthchecks, migrations and psql.
RESERVED = 3
HEADROOM = 20


@dataclass
class Dockerfile:
    """The final stage of the Dockerfile, and every COPY from the build context."""

    env: dict[str, str] = field(default_factory=dict)
    run: list[str] = field(default_factory=list)
    user: str = "root"
    expose: list[int] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    context_copies: list[str] = field(default_factory=list)


def read_dockerfile() -> Dockerfile:
    text = (ROOT / "Dockerfile").read_text()
    lines = [
        line for line in text.replace("\\\n", " ").splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    image = Dockerfile()
    for line in lines:
        instruction, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        match instruction.upper():
            case "FROM":
                image = Dockerfile(context_copies=image.context_copies)  # only the last stage runs
            case "ENV":
                image.env.update(dict(part.split("=", 1) for part in shlex.split(rest)))
            case "RUN":
                image.run.append(rest)
            case "USER":
                image.user = rest
            case "EXPOSE":
                image.expose += [int(port) for port in rest.split()]
            case "ENTRYPOINT":
                image.entrypoint = json.loads(rest)
            case "CMD":
                image.cmd = json.loads(rest)
            case "HEALTHCHECK":
                image.healthcheck = json.loads(rest[rest.index("CMD ") + 4 :])
            case "COPY" if not rest.startswith("--from"):
                image.context_copies += shlex.split(rest)[:-1]
    return image


def read_compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # resolves the `<<` merge keys
    return document


def gateway_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("image") == GATEWAY_IMAGE or "build" in s}


def _http_port(probe: list[str]) -> int | None:
    found = re.search(r"https?://[^/:'\"]+:(\d+)", " ".join(probe))
    return int(found.group(1)) if found else None


def test_the_images_command_and_healthcheck_are_ones_the_cli_and_the_app_answer() -> None:
    image = read_dockerfile()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert image.entrypoint == ["image-gateway"] and scripts["image-gateway"] == "app.cli:main"
    args = build_parser().parse_args(image.cmd)
    assert args.run is cmd_serve
    assert args.port in image.expose
    # The healthcheck probes the port `serve` listens on, at a route the app has.
    assert _http_port(image.healthcheck) == args.port
    path = re.search(r":\d+(/[^'\"]*)", " ".join(image.healthcheck))
    assert path is not None
    assert path.group(1) in create_app(Settings()).openapi()["paths"]
    for source in image.context_copies:
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"


def test_the_image_alone_keeps_its_sqlite_database_in_its_writable_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    image = read_dockerfile()
    data_dir = image.env["GATEWAY_DATA_DIR"]
    assert "GATEWAY_DATABASE_URL" not in image.env  # the default: a file inside the data dir
    assert any(re.search(rf"mkdir -p {data_dir}( |$)", run) for run in image.run)
    assert any(re.search(rf"chown {image.user} {data_dir}( |$)", run) for run in image.run), "not the user's"
    assert image.user != "root"
    for name in [name for name in os.environ if name.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    for name, value in image.env.items():
        monkeypatch.setenv(name, value)
    url = make_url(Settings(_env_file=None).database_url)
    assert (url.drivername, url.database) == ("sqlite+aiosqlite", f"{data_dir}/gateway.db")


def test_compose_runs_cli_commands_that_exist_with_healthchecks_they_can_pass() -> None:
    compose, image = read_compose(), read_dockerfile()
    services = gateway_services(compose)
    assert {name: build_parser().parse_args(s["command"]).run for name, s in services.items()} == {
        "api-1": cmd_serve,
        "api-2": cmd_serve,
        "worker": cmd_worker,
    }
    for name, service in services.items():
        args = build_parser().parse_args(service["command"])
        probe: list[str] = service.get("healthcheck", {}).get("test") or ["CMD", *image.healthcheck]
        if args.run is cmd_serve:
            assert _http_port(probe) == args.port, f"{name}'s healthcheck probes another port than it serves"
        else:  # a worker serves no HTTP: its probe is the CLI's check
            assert _http_port(probe) is None, f"{name} has an HTTP healthcheck it can never pass"
            assert probe[:2] == ["CMD", "image-gateway"]
            check = build_parser().parse_args(probe[2:])
            assert (check.run, check.check) == (cmd_worker, True)
        # Files are shared through the volume mounted on the data dir.
        mounts = {volume.split(":")[1] for volume in service["volumes"]}
        assert service["environment"]["GATEWAY_DATA_DIR"] in mounts
    everything = compose["services"]
    for name, service in everything.items():
        for needed, condition in (service.get("depends_on") or {}).items():
            assert needed in everything, f"{name} depends on {needed}, which compose does not define"
            if condition.get("condition") == "service_healthy":
                assert "healthcheck" in everything[needed] or needed in services, f"{needed} has no healthcheck"
    # nginx sends traffic to the API replicas, on the port they serve.
    upstreams = re.findall(r"server (\S+):(\d+)", (ROOT / "docker" / "nginx.conf").read_text())
    assert sorted(upstreams) == sorted(
        (name, str(build_parser().parse_args(s["command"]).port))
        for name, s in services.items()
        if build_parser().parse_args(s["command"]).run is cmd_serve
    )


def test_compose_database_pools_fit_postgres_max_connections() -> None:
    compose = read_compose()
    command = compose["services"]["postgres"]["command"]
    settings = dict(part.split("=", 1) for part in command if "=" in part)
    max_connections = int(settings["max_connections"])
    # The README tells operators to scale workers this far.
    documented = re.findall(r"--scale worker=(\d+)", (ROOT / "docker" / "README.md").read_text())
    worker_scale = max([1, *map(int, documented)])
    defaults = Settings.model_fields
    total = 0
    for service in gateway_services(compose).values():
        env = service["environment"]
        args = build_parser().parse_args(service["command"])
        processes = getattr(args, "workers", 1) * (worker_scale if args.run is cmd_worker else 1)
        pool = int(env.get("GATEWAY_DB_POOL_SIZE", defaults["db_pool_size"].default))
        overflow = int(env.get("GATEWAY_DB_MAX_OVERFLOW", defaults["db_max_overflow"].default))
        total += processes * (pool + overflow)
    assert total + HEADROOM <= max_connections - RESERVED, (total, max_connections)
    # The arithmetic written at the top of the file is this one.
    assert f"{total} of {max_connections - RESERVED}" in COMPOSE.read_text()


def _compose_worker_check() -> list[str]:
    probe: list[str] = read_compose()["services"]["worker"]["healthcheck"]["test"]
    return [*gateway_command(), *probe[2:]]


def test_the_workers_healthcheck_passes_while_its_database_answers_and_fails_when_not(
    database_url: str, backend: str, tmp_path: Path
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env = {**base, "GATEWAY_DATABASE_URL": database_url, "GATEWAY_DATA_DIR": str(tmp_path)}
    if backend == "postgres":  # as in compose: PostgreSQL and Redis
        env["GATEWAY_REDIS_URL"] = REDIS_URL
    passed = subprocess.run(_compose_worker_check(), env=env, capture_output=True, text=True, timeout=60)
    assert (passed.returncode, passed.stderr) == (0, "")

    down = (
        "postgresql+asyncpg://gateway@127.0.0.1:1/gateway"
        if backend == "postgres"
        else f"sqlite+aiosqlite:///{tmp_path}/missing/dir/gateway.db"
    )
    failed = subprocess.run(
        _compose_worker_check(), env={**env, "GATEWAY_DATABASE_URL": down}, capture_output=True, text=True, timeout=60
    )
    assert failed.returncode == 1
    assert "unhealthy: database" in failed.stderr


@pytest.mark.slow
def test_a_gateway_started_as_the_image_starts_it_creates_its_data_dir_and_is_ready(tmp_path: Path) -> None:
    image = read_dockerfile()
    data_dir = tmp_path / "volume" / "data"  # does not exist yet
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(image.env, GATEWAY_DATA_DIR=str(data_dir))
    port = free_port()
    # The image's CMD, listening on loopback and a free port instead of 0.0.0.0:8000.
    args = [{"0.0.0.0": "127.0.0.1", "8000": str(port)}.get(arg, arg) for arg in image.cmd]
    assert args != image.cmd and len(args) == len(image.cmd)
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [*gateway_command(), *args], env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, process)
        assert httpx.get(f"{base_url}/readyz").json() == {"status": "ok", "database": "ok"}
        # Migrated on start: a key lookup reads the keys table and answers the contract's 401.
        refused = httpx.get(f"{base_url}/v1/models", headers={"authorization": "Bearer igw_unknown"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "invalid_api_key")
        # The image's own healthcheck command passes against it.
        probe = [part.replace(":8000/", f":{port}/") for part in image.healthcheck]
        assert probe[0] == "python"
        assert subprocess.run([sys.executable, *probe[1:]], timeout=30, check=False).returncode == 0
    finally:
        stop(process)
        log.close()
    assert (data_dir / "gateway.db").is_file()
    assert list(workdir.iterdir()) == []  # nothing relative to the working directory


def _dry_run(venv: Path, *targets: str) -> list[list[str]]:
    """The commands `make -n` would run, split as the shell would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    out = subprocess.run(
        ["make", "-n", "-C", str(ROOT), f"VENV={venv}", *targets],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return [shlex.split(line) for line in out.splitlines() if line.strip()]


def _installs(commands: list[list[str]]) -> list[list[str]]:
    return [c for c in commands if c[:2] == [c[0], "install"] and c[0].endswith("/pip")]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_installs_only_the_runtime_and_listens_where_asked(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    commands = _dry_run(venv, "run", "PORT=9123", "HOST=0.0.0.0")
    (install,) = _installs(commands)
    assert install[-2:] == ["-e", "."]  # no [dev] extra: no test, lint or type tools
    assert not {"-q", "--quiet"} & set(install)  # pip shows its progress
    (serve,) = [c for c in commands if c[0] == f"{venv}/bin/image-gateway"]
    args = build_parser().parse_args(serve[1:])
    assert (args.run, args.host, args.port) == (cmd_serve, "0.0.0.0", 9123)

    (test_install,) = _installs(_dry_run(venv, "test"))
    assert test_install[-2:] == ["-e", ".[dev]"]

    # After a runtime install, `make run` installs nothing and `make test` adds the dev extra;
    # after a dev install, neither installs anything.
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / ".runtime-stamp").touch()
    assert _installs(_dry_run(venv, "run")) == []
    assert [c[-1] for c in _installs(_dry_run(venv, "pytest"))] == [".[dev]"]
    (venv / ".dev-stamp").touch()
    assert _installs(_dry_run(venv, "run", "pytest")) == []
