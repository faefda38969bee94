"""Pure-ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): every request gets the
gateway's own id (`X-Request-Id`, the one id of the usage record, the ledger and every log line),
every response echoes a usable caller id (`X-Client-Request-Id`), every request is counted and
ends with one access line."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db import new_id
from app.http.rate_limit_headers import rate_limit_headers
from app.keys.auth import RPM_CALLER_FACT
from app.observability.logs import request_facts_var, request_id_var

access_log = logging.getLogger("app.access")
MAX_CLIENT_ID = 128
# Probes come every few seconds from load balancers and Prometheus: at INFO they would drown the
# lines an operator looks for.
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
_CLIENT_ID_HEADERS = (b"x-client-request-id", b"x-request-id")  # in this order of preference
# The facts noted on the way (app.observability.logs.note), in the order the line shows them.
_NOTED = ("error_code", "account_id", "account_name", "key_prefix", "model", "channel", "images", "credits")


def client_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The caller's own id for the request: `X-Client-Request-Id`, else an `X-Request-Id` it sent.
    Printable ASCII of at most 128 characters, or it is ignored: a client never fails on it."""
    sent = dict((name, value) for name, value in headers if name in _CLIENT_ID_HEADERS)
    for name in _CLIENT_ID_HEADERS:
        value = sent.get(name)
        if value is not None:
            usable = 0 < len(value) <= MAX_CLIENT_ID and all(0x20 <= byte <= 0x7E for byte in value)
            return value.decode("ascii") if usable else None
    return None


class RequestIdMiddleware:
    """Mints the request's gateway id; a caller's id is recorded beside it, never instead of it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id("req")
        client_id = client_request_id(scope["headers"])
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["client_request_id"] = client_id
        facts: dict[str, Any] = {}
        id_token = request_id_var.set(request_id)
        facts_token = request_facts_var.set(facts)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = request_id
                if client_id is not None:
                    headers["x-client-request-id"] = client_id
                if RPM_CALLER_FACT in facts:  # a key with an rpm: x-ratelimit-* on its every answer
                    headers.update(await rate_limit_headers(scope, facts))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            facts.setdefault("error_code", "internal_error")
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            # The route's template, never the raw path: ids in paths would explode the series,
            # and a query string may carry a key.
            template = getattr(route, "path", "unmatched")
            try:
                _access_line(scope, template, status, elapsed, (request_id, client_id), facts)
            finally:
                request_facts_var.reset(facts_token)
                request_id_var.reset(id_token)
            gateway = getattr(scope["app"].state, "gateway", None) if "app" in scope else None
            if gateway is not None:
                gateway.metrics.http_requests.labels(template, scope["method"], str(status)).inc()
                gateway.metrics.http_latency.labels(template).observe(elapsed)


def _access_line(
    scope: Scope, template: str, status: int, elapsed: float, ids: tuple[str, str | None], facts: dict[str, Any]
) -> None:
    level = logging.DEBUG if template in _PROBES else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    fields: dict[str, Any] = {
        "request_id": ids[0],
        "client_request_id": ids[1],
        "method": scope["method"],
        "route": template,
        "status": status,
        **{name: facts.get(name) for name in _NOTED},
        "latency_ms": int(elapsed * 1000),
    }
    access_log.log(level, "%s %s %s", scope["method"], template, status, extra=fields)
