"""The production shape on one machine: two `image-gateway serve` replicas and task workers on
one PostgreSQL and one Redis, with traffic through both replicas."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.databases import REDIS_URL, TemplateDatabases
from tests.support.fakes.channels import ok
from tests.support.fakes.upstream import FakeUpstream, Received, Reply
from tests.support.processes import gateway_command, gateway_env, serving, stop
from tests.support.served import account_with_key, add_channel, admin

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_url(templates: TemplateDatabases, tmp_path: Path) -> Iterator[str]:
    with templates.fresh("postgres", tmp_path) as url:
        yield url


@pytest.fixture
def cluster(pg_url: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], str, str]]:
    """Two API replicas (no in-process worker) sharing PostgreSQL and Redis."""
    env = gateway_env(
        pg_url,
        tmp_path / "data",
        GATEWAY_REDIS_URL=REDIS_URL,
        GATEWAY_RUN_WORKER="false",
        GATEWAY_TASK_LEASE_S="1.5",
        GATEWAY_WORKER_POLL_S="0.1",
        GATEWAY_SHUTDOWN_GRACE_S="0",
    )
    with ExitStack() as stack:
        first = stack.enter_context(serving(env, log_path=tmp_path / "api-1.log"))
        second = stack.enter_context(serving(env, log_path=tmp_path / "api-2.log"))
        yield env, first, second


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*gateway_command(), "worker"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def burst(urls: list[str], key: str, count: int, body: dict[str, Any] | None = None) -> list[int]:
    async with httpx.AsyncClient(timeout=60) as http:
        responses = await asyncio.gather(
            *(
                http.post(
                    f"{urls[i % len(urls)]}/v1/images/generations",
                    json=body or {"prompt": f"p{i}"},
                    headers={"authorization": f"Bearer {key}"},
                )
                for i in range(count)
            )
        )
    return [r.status_code for r in responses]


def test_two_replicas_share_money_limits_and_channel_changes(
    cluster: tuple[dict[str, str], str, str], upstream: FakeUpstream
) -> None:
    _, first, second = cluster
    seen: list[str] = []

    def answer(received: Received) -> Reply:
        seen.append(received.path.split("/")[1])
        return ok(received)

    upstream.respond = answer
    preferred = add_channel(first, upstream, "preferred", priority=10)
    add_channel(first, upstream, "fallback", priority=0)
    time.sleep(2.5)  # past the second replica's catalog cache

    # No overdraft across replicas: credits for 10 images, 30 concurrent requests through both.
    account_id, key = account_with_key(first, credits=80)
    statuses = asyncio.run(burst([first, second], key, 30))
    assert statuses.count(200) == 10 and statuses.count(402) == 20, statuses
    with admin(second) as client:
        account = client.get(f"/admin/accounts/{account_id}").json()
        assert (account["balance"], account["held"]) == ("0", "0")
        assert client.get("/admin/ledger/check").json()["ok"] is True

    # One rate limit for the key, whichever replica answers.
    _, limited_key = account_with_key(first, credits=1000, rpm=5)
    statuses = asyncio.run(burst([first, second], limited_key, 10))
    assert statuses.count(200) == 5 and statuses.count(429) == 5, statuses

    # A channel disabled through one replica stops being used by the other within 5 s.
    _, key = account_with_key(first, credits=1000)
    with admin(first) as client:
        client.patch(f"/admin/channels/{preferred['id']}", json={"enabled": False})
    disabled_at = time.monotonic()
    while True:
        seen.clear()
        assert asyncio.run(burst([second], key, 1)) == [200]
        if seen == ["fallback"]:
            break
        assert time.monotonic() - disabled_at < 5, "the second replica still routes to the disabled channel"
        time.sleep(0.2)


def test_tasks_complete_when_a_worker_is_killed(
    cluster: tuple[dict[str, str], str, str], upstream: FakeUpstream, tmp_path: Path
) -> None:
    env, first, second = cluster
    upstream.respond = lambda received: Reply(json=ok(received).json, delay_s=1.0)
    add_channel(first, upstream, "slowish", priority=0)
    account_id, key = account_with_key(first, credits=1000)
    workers = [start_worker(env) for _ in range(2)]
    try:
        with httpx.Client(timeout=10) as http:
            task_ids = [
                http.post(
                    f"{(first, second)[i % 2]}/v1/images/generations",
                    json={"prompt": f"t{i}", "async": True},
                    headers={"authorization": f"Bearer {key}"},
                ).json()["id"]
                for i in range(6)
            ]
            time.sleep(0.5)  # both workers are busy now
            os.killpg(workers[0].pid, signal.SIGKILL)
            workers[0].wait(timeout=10)
            deadline = time.monotonic() + 40
            statuses: list[str] = []
            while time.monotonic() < deadline:
                statuses = [
                    http.get(f"{second}/v1/tasks/{task_id}", headers={"authorization": f"Bearer {key}"}).json()[
                        "status"
                    ]
                    for task_id in task_ids
                ]
                if all(s == "succeeded" for s in statuses):
                    break
                time.sleep(0.2)
            assert statuses == ["succeeded"] * 6
    finally:
        for worker in workers:
            stop(worker)
    with admin(second) as client:
        account = client.get(f"/admin/accounts/{account_id}").json()
        assert (account["balance"], account["held"]) == (str(1000 - 6 * 8), "0")
        assert client.get("/admin/ledger/check").json()["ok"] is True


def test_key_revoked_through_one_replica_is_refused_by_the_other(cluster: tuple[dict[str, str], str, str]) -> None:
    _, first, second = cluster
    _, key = account_with_key(first, credits=100)
    assert asyncio.run(burst([second], key, 1)) == [200]  # the second replica has the key cached now
    with admin(first) as client:
        key_id = next(k["id"] for k in client.get("/admin/keys").json()["data"] if key.startswith(k["prefix"]))
        assert client.delete(f"/admin/keys/{key_id}").status_code == 200
    revoked_at = time.monotonic()
    while asyncio.run(burst([second], key, 1)) != [401]:
        assert time.monotonic() - revoked_at < 5, "the second replica still accepts a revoked key"
        time.sleep(0.2)
