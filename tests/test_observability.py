"""Metrics after traffic, JSON logs with the request id, and caller-supplied request ids."""

from __future__ import annotations

import asyncio
import logging

import orjson
from prometheus_client.parser import text_string_to_metric_families

from app.observability.logs import JsonFormatter, request_id_var
from tests.support.fakes.channels import Upstreams, ok, status
from tests.support.fakes.upstream import FakeUpstream
from tests.support.harness import Harness


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_what_happened(gw: Harness, upstream: FakeUpstream) -> None:
    local = await gw.local_channel()
    await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
    ups = Upstreams(upstream)
    await ups.channel(gw, "main", ok, multiplier="1.5")
    _, key = await gw.account_with_key(credits=1000)
    for _ in range(3):
        assert (await gw.generate(key, {"prompt": "x", "n": 2})).status_code == 200
    ups.behaviour["main"] = status(503)
    assert (await gw.generate(key, {"prompt": "x"})).status_code == 502
    ups.behaviour["main"] = ok
    task = (await gw.generate(key, {"prompt": "x", "async": True})).json()
    for _ in range(100):
        current = (await gw.http.get(f"/v1/tasks/{task['id']}", headers={"authorization": f"Bearer {key}"})).json()
        if current["status"] == "succeeded":
            break
        await asyncio.sleep(0.05)

    response = await gw.http.get("/metrics")
    assert response.status_code == 200
    found = samples(response.text)
    route = "/v1/images/generations"
    assert value(found, "gateway_http_requests_total", route=route, method="POST", status="200") == 3
    assert value(found, "gateway_http_requests_total", route=route, method="POST", status="502") == 1
    assert value(found, "gateway_http_requests_total", route=route, method="POST", status="202") == 1
    assert value(found, "gateway_upstream_requests_total", channel="main", outcome="ok") == 4
    assert value(found, "gateway_upstream_requests_total", channel="main", outcome="retryable") == 1
    assert value(found, "gateway_upstream_seconds_count", channel="main") == 5
    assert value(found, "gateway_images_delivered_total", model="imagen4", channel="main") == 7
    assert value(found, "gateway_credits_charged_total", model="imagen4", channel="main") == 84  # 7 × 8 × 1.5
    assert value(found, "gateway_generations_total", model="imagen4", outcome="failed") == 1
    assert value(found, "gateway_holds_open") == 0
    assert value(found, "gateway_tasks", status="succeeded") == 1
    assert value(found, "gateway_channel_circuit", channel="main", state="closed") == 1


async def test_request_id_from_the_caller_is_kept_beside_the_gateways(gw: Harness) -> None:
    # The contract's "One request, one id": the gateway's id is always its own; the caller's is echoed.
    response = await gw.http.get("/healthz", headers={"x-request-id": "trace-42.abc"})
    assert response.headers["x-request-id"].startswith("req_")
    assert response.headers["x-client-request-id"] == "trace-42.abc"
    spaced = await gw.http.get("/healthz", headers={"x-request-id": "an id with spaces"})
    assert spaced.headers["x-client-request-id"] == "an id with spaces"  # printable ASCII is fine


def test_json_log_lines_carry_the_request_id() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("app.test", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.channel = "main"
    token = request_id_var.set("req_123")
    try:
        line = orjson.loads(formatter.format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "hello world"
    assert (line["request_id"], line["level"], line["logger"], line["channel"]) == (
        "req_123",
        "info",
        "app.test",
        "main",
    )
