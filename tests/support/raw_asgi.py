"""Calling the ASGI app directly, for what httpx's transport cannot do: a client that goes away
mid-request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tests.support.harness import Harness


async def call_generation_raw(
    gw: Harness,
    key: str,
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """POST /v1/images/generations straight into the ASGI app, so a test controls exactly what
    the client sends and when it goes away (httpx's transport cannot disconnect mid-request)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/images/generations",
        "raw_path": b"/v1/images/generations",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("gateway.test", 80),
        "state": {},
    }
    await gw.app(scope, receive, send)  # type: ignore[arg-type]
