"""Pure-ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): every response gets
an `X-Request-Id`, every log line of the request carries it, and every request is counted."""

from __future__ import annotations

import re
import secrets
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.logs import request_id_var

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RequestIdMiddleware:
    """The caller's own `X-Request-Id` when it sent a sane one, else a minted one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _SAFE_ID.match(incoming) else f"req_{secrets.token_hex(12)}"
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
            gateway = getattr(scope["app"].state, "gateway", None) if "app" in scope else None
            if gateway is not None:
                route = scope.get("route")
                # The route's template, never the raw path: ids in paths would explode the series.
                template = getattr(route, "path", "unmatched")
                gateway.metrics.http_requests.labels(template, scope["method"], str(status)).inc()
                gateway.metrics.http_latency.labels(template).observe(time.perf_counter() - started)
