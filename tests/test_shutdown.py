"""Graceful shutdown: SIGTERM lets in-flight requests finish and puts running tasks back on the
queue with their holds, for the next process to finish."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.fakes.channels import ok
from tests.support.fakes.upstream import FakeUpstream, Received, Reply
from tests.support.processes import free_port, gateway_command, gateway_env, serving, wait_healthy
from tests.support.served import account_with_key, add_channel, admin

pytestmark = pytest.mark.slow


def _start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [*gateway_command(), "serve", "--port", str(port)],
        env=env,
        start_new_session=True,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    wait_healthy(base_url, process)
    return process, base_url


def test_sigterm_finishes_in_flight_requests(database_url: str, tmp_path: Path, upstream: FakeUpstream) -> None:
    upstream.respond = lambda received: Reply(json=ok(received).json, delay_s=1.5)
    env = gateway_env(database_url, tmp_path / "data", GATEWAY_SHUTDOWN_GRACE_S="10")
    process, base_url = _start(env, tmp_path / "serve.log")
    try:
        add_channel(base_url, upstream, "slow", priority=0)
        _, key = account_with_key(base_url, credits=100)
        answers: list[int] = []

        def call() -> None:
            response = httpx.post(
                f"{base_url}/v1/images/generations",
                json={"prompt": "x"},
                headers={"authorization": f"Bearer {key}"},
                timeout=30,
            )
            answers.append(response.status_code)

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.5)  # the request is with the upstream now
        os.killpg(process.pid, signal.SIGTERM)
        caller.join(timeout=20)
        assert answers == [200]
        # uvicorn re-raises SIGTERM once it has shut down cleanly, so the exit status is -15.
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_sigterm_requeues_running_tasks_with_their_holds(
    database_url: str, tmp_path: Path, upstream: FakeUpstream
) -> None:
    slow = {"delay": 30.0}

    def answer(received: Received) -> Reply:
        return Reply(json=ok(received).json, delay_s=slow["delay"])

    upstream.respond = answer
    env = gateway_env(database_url, tmp_path / "data", GATEWAY_SHUTDOWN_GRACE_S="1", GATEWAY_WORKER_POLL_S="0.1")
    process, base_url = _start(env, tmp_path / "first.log")
    try:
        add_channel(base_url, upstream, "slow", priority=0)
        account_id, key = account_with_key(base_url, credits=100)
        task_id = httpx.post(
            f"{base_url}/v1/images/generations",
            json={"prompt": "x", "async": True},
            headers={"authorization": f"Bearer {key}"},
            timeout=10,
        ).json()["id"]
        deadline = time.monotonic() + 10
        while not upstream.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    slow["delay"] = 0.0
    with serving(env, log_path=tmp_path / "second.log") as base_url:
        with admin(base_url) as client:
            held = client.get(f"/admin/accounts/{account_id}").json()["held"]
        assert held in ("8", "0")  # still held while queued, or already settled by the new worker
        deadline = time.monotonic() + 20
        task: dict[str, object] = {}
        while time.monotonic() < deadline:
            task = httpx.get(f"{base_url}/v1/tasks/{task_id}", headers={"authorization": f"Bearer {key}"}).json()
            if task["status"] == "succeeded":
                break
            time.sleep(0.1)
        assert task["status"] == "succeeded", task
        with admin(base_url) as client:
            account = client.get(f"/admin/accounts/{account_id}").json()
            assert (account["balance"], account["held"]) == ("92", "0")
            assert client.get("/admin/ledger/check").json()["ok"] is True
