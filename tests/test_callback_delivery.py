"""Callback delivery against real receivers on 127.0.0.1 (allow-listed, as an operator would for a
local receiver): the body arrives signed so a Standard Webhooks library verifies it, the name the
caller gave is what the receiver sees (Host header, TLS server name and certificate), and
anything but a 2xx answer is a failure that is never followed anywhere else.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app.billing.accounts import new_webhook_secret
from app.callbacks import guarded_deliver, sign, webhook_headers
from tests.support.fakes.dns import FakeResolver
from tests.support.processes import free_port
from tests.support.receivers import Answer, Receiver, receiver
from tests.support.tls import self_signed, server_context

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
TASK = {"id": "task_01", "object": "task", "status": "succeeded", "metadata": {"team": "søk"}}


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for hook in started:
        await hook.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def signed(secret: str, payload: object = TASK, message_id: str = "msg_task_01") -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(payload)
    return body, webhook_headers(secret, message_id, body)


async def test_the_receiver_gets_a_body_that_verifies_with_standard_webhooks(
    http: httpx.AsyncClient, receivers: list[Receiver]
) -> None:
    hook = await receiver(receivers)
    secret = new_webhook_secret()
    body, headers = signed(secret)

    outcome = await guarded_deliver(http, f"{hook.url}/hooks/images?team=a%2Fb", LOOPBACK, body, headers, 5.0)

    assert outcome.delivered
    assert outcome.status_code == 200
    [got] = hook.requests
    assert (got.method, got.target) == ("POST", "/hooks/images?team=a%2Fb")
    assert got.body == body
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-id"] == "msg_task_01"
    assert Webhook(secret).verify(got.body, got.headers) == TASK
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(got.body.replace(b"succeeded", b"failed"), got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(got.body, got.headers)


def test_retries_keep_the_id_and_sign_a_fresh_timestamp() -> None:
    secret = new_webhook_secret()
    body = orjson.dumps(TASK)
    now = time.time()

    first = webhook_headers(secret, "msg_1", body, now=now - 120)
    retry = webhook_headers(secret, "msg_1", body, now=now)

    assert first["webhook-id"] == retry["webhook-id"] == "msg_1"
    assert int(retry["webhook-timestamp"]) - int(first["webhook-timestamp"]) == 120
    assert first["webhook-signature"] != retry["webhook-signature"]
    for headers in (first, retry):
        assert Webhook(secret).verify(body, headers) == TASK
    at = datetime.datetime.fromtimestamp(int(now), tz=datetime.UTC)
    assert sign(secret, "msg_1", int(now), body) == Webhook(secret).sign("msg_1", at, body.decode())


async def test_the_receiver_sees_the_callers_host_name_not_the_address(
    http: httpx.AsyncClient, receivers: list[Receiver]
) -> None:
    hook = await receiver(receivers)
    dns = FakeResolver({"hooks.example.test": ["127.0.0.1"]})
    body, headers = signed(new_webhook_secret())

    outcome = await guarded_deliver(
        http, f"http://hooks.example.test:{hook.port}/cb", LOOPBACK, body, headers, 5.0, resolver=dns
    )

    assert outcome.delivered
    assert hook.requests[0].headers["host"] == f"hooks.example.test:{hook.port}"
    # Resolved once by the guard; the connection went to that address without a second lookup
    # (the name exists only in the fake DNS, so a real lookup would have failed).
    assert dns.lookups == ["hooks.example.test"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return self_signed(tmp_path_factory.mktemp("tls"), "hooks.example.test")


async def test_https_callbacks_present_and_verify_the_callers_host_name(
    certificate: Path, receivers: list[Receiver]
) -> None:
    hook = await receiver(receivers, tls=server_context(certificate))
    dns = FakeResolver({"hooks.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]})
    body, headers = signed(new_webhook_secret())
    trust = ssl.create_default_context(cafile=str(certificate / "cert.pem"))

    async with httpx.AsyncClient(verify=trust, trust_env=False) as http:
        named = await guarded_deliver(
            http, f"https://hooks.example.test:{hook.port}/cb", LOOPBACK, body, headers, 5.0, resolver=dns
        )
        # Same address, but a name the certificate does not cover: verification must fail.
        wrong_name = await guarded_deliver(
            http, f"https://other.example.test:{hook.port}/cb", LOOPBACK, body, headers, 5.0, resolver=dns
        )

    assert named.delivered, named
    assert hook.server_names[0] == "hooks.example.test"
    assert hook.requests[0].headers["host"] == f"hooks.example.test:{hook.port}"
    assert wrong_name.kind == "connect"
    assert len(hook.requests) == 1


async def test_any_2xx_is_delivered(http: httpx.AsyncClient, receivers: list[Receiver]) -> None:
    hook = await receiver(receivers, Answer(status=204, body=b""))
    body, headers = signed(new_webhook_secret())

    outcome = await guarded_deliver(http, hook.url, LOOPBACK, body, headers, 5.0)

    assert outcome.delivered
    assert outcome.status_code == 204


async def test_a_server_error_is_a_failure_with_a_short_reason(
    http: httpx.AsyncClient, receivers: list[Receiver]
) -> None:
    hook = await receiver(receivers, Answer(status=500, body=b"database is down\n" + b"x" * 50_000))
    body, headers = signed(new_webhook_secret())

    outcome = await guarded_deliver(http, hook.url + "/cb", LOOPBACK, body, headers, 5.0)

    assert not outcome.delivered
    assert (outcome.kind, outcome.status_code) == ("http_status", 500)
    assert "500: database is down" in outcome.reason
    assert len(outcome.reason) < 260


async def test_a_redirect_is_a_failure_and_is_never_followed(
    http: httpx.AsyncClient, receivers: list[Receiver]
) -> None:
    elsewhere = await receiver(receivers)
    hook = await receiver(receivers, Answer(status=302, headers={"location": f"{elsewhere.url}/internal"}))
    body, headers = signed(new_webhook_secret())

    outcome = await guarded_deliver(http, hook.url + "/cb", LOOPBACK, body, headers, 5.0)

    assert (outcome.kind, outcome.status_code) == ("redirect", 302)
    assert f"{elsewhere.url}/internal" in outcome.reason
    assert len(hook.requests) == 1
    assert elsewhere.connections == 0


async def test_a_slow_receiver_times_out(http: httpx.AsyncClient, receivers: list[Receiver]) -> None:
    hook = await receiver(receivers, Answer(delay_s=10.0))
    body, headers = signed(new_webhook_secret())
    started = time.monotonic()

    outcome = await guarded_deliver(http, hook.url, LOOPBACK, body, headers, timeout_s=0.3)

    assert outcome.kind == "timeout"
    assert not outcome.delivered
    assert time.monotonic() - started < 2.0
    assert len(hook.requests) == 1


async def test_a_closed_port_is_a_connect_failure(http: httpx.AsyncClient) -> None:
    body, headers = signed(new_webhook_secret())

    outcome = await guarded_deliver(http, f"http://127.0.0.1:{free_port()}/", LOOPBACK, body, headers, 5.0)

    assert outcome.kind == "connect"
    assert outcome.status_code is None
