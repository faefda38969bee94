"""Real `image-gateway` processes for end-to-end tests (bounded in time, loopback only)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.harness import ADMIN_TOKEN


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def gateway_command() -> list[str]:
    found = shutil.which("image-gateway", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "app"]


def gateway_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_DATABASE_URL=database_url,
        GATEWAY_DATA_DIR=str(data_dir),
        GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN,
        # Many gateways share the test machine's PostgreSQL (max_connections 100): keep pools small.
        GATEWAY_DB_POOL_SIZE="3",
        GATEWAY_DB_MAX_OVERFLOW="5",
    )
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*gateway_command(), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"image-gateway {' '.join(args)} failed: {result.stderr}")
    return result


def cli_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(cli(env, *args).stdout)


@contextmanager
def serving(env: dict[str, str], *extra_args: str, log_path: Path | None = None) -> Iterator[str]:
    """Run `image-gateway serve` until the block ends; yields its base URL."""
    port = free_port()
    log = open(log_path or os.devnull, "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [*gateway_command(), "serve", "--host", "127.0.0.1", "--port", str(port), *extra_args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, process)
        yield base_url
    finally:
        stop(process)
        log.close()


def wait_healthy(base_url: str, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gateway exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("gateway did not become ready")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
