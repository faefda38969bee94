"""Asynchronous tasks: submit, poll, files behind signed URLs, cancel, callbacks, retention."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import update
from standardwebhooks import Webhook

from app.db import utcnow
from app.files.models import StoredFile
from app.settings import Settings
from app.tasks.models import Task
from app.tasks.retention import purge_expired
from tests.support.fakes.upstream import FakeUpstream, Received, Reply
from tests.support.harness import Harness, running_app
from tests.support.images import decode_image

TASK_SETTINGS = {
    "worker_poll_s": 0.05,
    "callback_retry_base_s": 0.2,
    "callback_allow_networks": "127.0.0.0/8",
    "task_lease_s": 5.0,
}


@pytest.fixture
async def tw(settings: Settings) -> AsyncIterator[Harness]:
    async with running_app(settings.model_copy(update=TASK_SETTINGS)) as gw:
        yield gw


async def wait_for(gw: Harness, key: str, task_id: str, *statuses: str, timeout_s: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        task: dict[str, Any] = (await gw.http.get(f"/v1/tasks/{task_id}", headers=_auth(key))).json()
        if task["status"] in statuses:
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task stuck in {task['status']}: {task}")
        await asyncio.sleep(0.05)


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_submit_poll_and_fetch_the_files(tw: Harness) -> None:
    account_id, key = await tw.account_with_key(credits=100)
    submitted = await tw.generate(key, {"prompt": "a fox", "n": 2, "async": True, "metadata": {"job": "7"}})
    assert submitted.status_code == 202, submitted.text
    task = submitted.json()
    assert (task["object"], task["status"], task["model"]) == ("task", "queued", "imagen4")
    assert task["metadata"] == {"job": "7"}
    assert (await tw.account(account_id))["held"] == "16"  # held at submission

    done = await wait_for(tw, key, task["id"], "succeeded")
    assert done["billing"]["credits"] == "16"
    assert done["started_at"] and done["completed_at"]
    for item in done["result"]["data"]:
        fetched = await tw.http.get(item["url"])  # the signed URL is the permission: no key
        assert fetched.status_code == 200
        assert fetched.headers["content-type"] == "image/png"
        assert decode_image(base64.b64encode(fetched.content).decode()).size == (1024, 1024)
    account = await tw.account(account_id)
    assert (account["balance"], account["held"]) == ("84", "0")
    assert await tw.ledger_problems() == []


async def test_tampered_or_expired_file_urls_are_403(tw: Harness) -> None:
    _, key = await tw.account_with_key()
    response = await tw.generate(key, {"prompt": "x", "response_format": "url"})
    assert response.status_code == 200, response.text
    url = response.json()["data"][0]["url"]
    assert (await tw.http.get(url)).status_code == 200
    file_id = url.split("/v1/files/")[1].split("?")[0]
    tampered = url.replace("sig=", "sig=A")
    assert (await tw.http.get(tampered)).status_code == 403
    signer = tw.gateway.files.signer
    expired = signer.url("http://gateway.test", file_id, now=time.time() - 2 * signer.ttl_s)
    assert (await tw.http.get(expired)).status_code == 403
    assert (await tw.http.get(f"/v1/files/{file_id}")).status_code == 403  # neither signature nor key
    assert (await tw.http.get(f"/v1/files/{file_id}", headers=_auth(key))).status_code == 200


async def test_other_accounts_see_404(tw: Harness) -> None:
    _, key = await tw.account_with_key()
    _, other_key = await tw.account_with_key()
    task = (await tw.generate(key, {"prompt": "x", "async": True})).json()
    done = await wait_for(tw, key, task["id"], "succeeded")
    file_id = done["result"]["data"][0]["url"].split("/v1/files/")[1].split("?")[0]
    assert (await tw.http.get(f"/v1/tasks/{task['id']}", headers=_auth(other_key))).status_code == 404
    assert (await tw.http.post(f"/v1/tasks/{task['id']}/cancel", headers=_auth(other_key))).status_code == 404
    assert (await tw.http.get(f"/v1/files/{file_id}", headers=_auth(other_key))).status_code == 404
    assert (await tw.http.get("/v1/tasks/task_nope", headers=_auth(key))).status_code == 404


async def test_short_credits_are_402_at_submission(tw: Harness) -> None:
    account_id, key = await tw.account_with_key(credits=10)
    response = await tw.generate(key, {"prompt": "x", "n": 2, "async": True})
    assert response.status_code == 402
    assert (await tw.account(account_id))["held"] == "0"


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.5/hook", "http://169.254.169.254/latest", "file:///etc/passwd", "http://[::1]/x", "ftp://x.org/"],
)
async def test_internal_callback_urls_are_refused_at_submission(settings: Settings, url: str) -> None:
    async with running_app(settings) as gw:  # nothing allow-listed
        account_id, key = await gw.account_with_key(credits=100)
        response = await gw.generate(key, {"prompt": "x", "callback_url": url})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "callback_url"
        assert (await gw.account(account_id))["held"] == "0"


async def test_cancel_a_queued_task_releases_its_hold(settings: Settings) -> None:
    async with running_app(settings.model_copy(update={"run_worker": False})) as gw:
        account_id, key = await gw.account_with_key(credits=100)
        task = (await gw.generate(key, {"prompt": "x", "async": True})).json()
        canceled = await gw.http.post(f"/v1/tasks/{task['id']}/cancel", headers=_auth(key))
        assert canceled.status_code == 200
        assert canceled.json()["status"] == "canceled"
        account = await gw.account(account_id)
        assert (account["balance"], account["held"]) == ("100", "0")
        assert await gw.ledger_problems() == []


class Receiver:
    """A callback receiver on 127.0.0.1 that fails its first `failures` deliveries."""

    def __init__(self, upstream: FakeUpstream, failures: int) -> None:
        self.failures = failures
        self.received: list[Received] = []
        self.url = f"{upstream.url}/hook"
        upstream.respond = self.respond

    def respond(self, received: Received) -> Reply:
        self.received.append(received)
        if len(self.received) <= self.failures:
            return Reply(503, {"busy": True})
        return Reply(204, body=b"")


async def test_callback_is_signed_and_retried_until_delivered(tw: Harness, upstream: FakeUpstream) -> None:
    receiver = Receiver(upstream, failures=1)
    account = await tw.create_account(credits=100)
    key = await tw.create_key(account["id"])
    submitted = await tw.generate(key, {"prompt": "x", "callback_url": receiver.url})
    assert submitted.status_code == 202, submitted.text
    task_id = submitted.json()["id"]
    assert submitted.json()["callback"] == {"url": receiver.url, "status": "pending", "attempts": 0}

    for _ in range(300):
        if len(receiver.received) >= 2:
            break
        await asyncio.sleep(0.05)
    assert len(receiver.received) == 2
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]  # stable across retries
    raw = orjson.dumps(second.json)
    verified = Webhook(account["webhook_secret"]).verify(raw, second.headers)
    assert verified["id"] == task_id and verified["status"] == "succeeded"
    assert all("b64" not in str(item) for item in verified["result"]["data"])  # URLs, never base64
    task = await wait_for(tw, key, task_id, "succeeded")
    for _ in range(50):
        task = (await tw.http.get(f"/v1/tasks/{task_id}", headers=_auth(key))).json()
        if task["callback"]["status"] == "delivered":
            break
        await asyncio.sleep(0.05)
    assert task["callback"] == {"url": receiver.url, "status": "delivered", "attempts": 2}


async def test_retention_removes_tasks_and_files(tw: Harness) -> None:
    _, key = await tw.account_with_key()
    task = (await tw.generate(key, {"prompt": "x", "async": True})).json()
    done = await wait_for(tw, key, task["id"], "succeeded")
    url = done["result"]["data"][0]["url"]
    past = utcnow() - timedelta(seconds=1)
    async with tw.gateway.db.transaction() as session:
        await session.execute(update(Task).values(expires_at=past))
        await session.execute(update(StoredFile).values(expires_at=past))
    assert await purge_expired(tw.gateway.db, tw.gateway.files.blobs) == 2
    assert (await tw.http.get(f"/v1/tasks/{task['id']}", headers=_auth(key))).status_code == 404
    assert (await tw.http.get(url)).status_code == 404
    assert list((tw.settings.data_dir / "blobs").rglob("file_*")) == []
