"""The one dependency behind both generation routes: authenticate the key, then read the body.

In that order: a caller without a valid key learns so before sending megabytes, and a bad key is
a 401 whatever the body holds. The Google relay also accepts `x-goog-api-key` and `?key=`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from app.http.body import endpoint_of, read_json
from app.keys.auth import Caller, authenticate
from app.runtime import Gateway, gateway_of


@dataclass(frozen=True)
class CallerPost:
    gateway: Gateway
    caller: Caller
    raw: bytes  # as sent, for the idempotency fingerprint
    body: dict[str, Any]
    base_url: str  # where the URLs the gateway hands out point
    endpoint: str  # the route, as recorded on the usage record
    request_id: str  # the gateway's id for this request (app/http/middleware.py)
    client_request_id: str | None  # the caller's own, when it sent a usable one


def caller_post(*, google_keys: bool) -> Callable[[Request], Awaitable[CallerPost]]:
    async def authenticated_body(request: Request) -> CallerPost:
        gateway = gateway_of(request)
        caller = await authenticate(gateway.keys, request, google=google_keys)
        raw, body = await read_json(request, gateway.settings.max_body_bytes)
        return CallerPost(
            gateway=gateway,
            caller=caller,
            raw=raw,
            body=body,
            base_url=gateway.settings.public_url or str(request.base_url),
            endpoint=endpoint_of(request),
            request_id=request.state.request_id,
            client_request_id=request.state.client_request_id,
        )

    return authenticated_body


CallerPostDep = Annotated[CallerPost, Depends(caller_post(google_keys=False))]
GooglePostDep = Annotated[CallerPost, Depends(caller_post(google_keys=True))]
