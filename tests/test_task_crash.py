"""Crashes lose nothing: kill -9 a gateway or a worker in the middle of a task, and the task still
completes, charged exactly once, with no hold left open."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fakes.upstream import FakeUpstream, Received, Reply, tiny_png_b64
from tests.support.processes import free_port, gateway_command, gateway_env, serving, stop, wait_healthy
from tests.support.served import account_with_key, add_channel, admin

pytestmark = pytest.mark.slow

FAST = {"GATEWAY_TASK_LEASE_S": "1.5", "GATEWAY_WORKER_POLL_S": "0.1", "GATEWAY_SHUTDOWN_GRACE_S": "0"}


class FirstCallHangs:
    """The first :predict hangs (the process serving it gets killed); later ones answer at once."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, received: Received) -> Reply:
        self.calls += 1
        image = {"bytesBase64Encoded": tiny_png_b64(), "mimeType": "image/png"}
        return Reply(json={"predictions": [image]}, delay_s=60 if self.calls == 1 else 0)


def _submit(base_url: str, key: str) -> str:
    response = httpx.post(
        f"{base_url}/v1/images/generations",
        json={"prompt": "survive", "async": True},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    task_id: str = response.json()["id"]
    return task_id


def _wait_task(base_url: str, key: str, task_id: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        task: dict[str, Any] = httpx.get(
            f"{base_url}/v1/tasks/{task_id}", headers={"authorization": f"Bearer {key}"}, timeout=10
        ).json()
        if task["status"] in ("succeeded", "failed", "canceled"):
            return task
        time.sleep(0.1)
    raise AssertionError("the task did not finish")


def _wait_calls(hang: FirstCallHangs, count: int) -> None:
    deadline = time.monotonic() + 20
    while hang.calls < count:
        assert time.monotonic() < deadline, "the upstream was never called"
        time.sleep(0.05)


def _assert_charged_once(base_url: str, account_id: str) -> None:
    with admin(base_url) as client:
        account = client.get(f"/admin/accounts/{account_id}").json()
        assert (account["balance"], account["held"]) == ("92", "0")  # 100 - one imagen4 image
        assert client.get("/admin/ledger/check").json() == {"ok": True, "problems": []}


def test_gateway_killed_mid_task_resumes_it_after_restart(
    database_url: str, tmp_path: Path, upstream: FakeUpstream
) -> None:
    hang = FirstCallHangs()
    upstream.respond = hang
    env = gateway_env(database_url, tmp_path / "data", **FAST)
    port = free_port()
    first = subprocess.Popen(
        [*gateway_command(), "serve", "--port", str(port)], env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, first)
        account_id, key = account_with_key(base_url, credits=100)
        add_channel(base_url, upstream, "imagen", priority=0)
        task_id = _submit(base_url, key)
        _wait_calls(hang, 1)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)

    with serving(env, log_path=tmp_path / "second.log") as base_url:
        task = _wait_task(base_url, key, task_id)
        assert task["status"] == "succeeded", task
        assert task["billing"]["credits"] == "8"
        assert hang.calls == 2  # the upstream call was repeated; the charge was not
        _assert_charged_once(base_url, account_id)


def test_worker_killed_mid_task_is_taken_over_by_another(
    database_url: str, tmp_path: Path, upstream: FakeUpstream
) -> None:
    hang = FirstCallHangs()
    upstream.respond = hang
    env = gateway_env(database_url, tmp_path / "data", **FAST)
    api_env = {**env, "GATEWAY_RUN_WORKER": "false"}
    with serving(api_env, log_path=tmp_path / "api.log") as base_url:
        account_id, key = account_with_key(base_url, credits=100)
        add_channel(base_url, upstream, "imagen", priority=0)
        doomed = subprocess.Popen(
            [*gateway_command(), "worker"], env=env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        survivor: subprocess.Popen[bytes] | None = None
        try:
            task_id = _submit(base_url, key)
            _wait_calls(hang, 1)
            survivor = subprocess.Popen(
                [*gateway_command(), "worker"], env=env, start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            os.killpg(doomed.pid, signal.SIGKILL)
            doomed.wait(timeout=10)
            task = _wait_task(base_url, key, task_id)
            assert task["status"] == "succeeded", task
            assert hang.calls == 2
            _assert_charged_once(base_url, account_id)
        finally:
            stop(doomed)
            if survivor is not None:
                stop(survivor)
