"""Reading a caller's JSON body with the checks every POST route shares."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from app.api.disconnect import ClientClosedRequest
from app.errors import InvalidRequest, RequestTooLarge, UnsupportedMediaType


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    _, body = await read_json(request, max_bytes)
    return body


async def read_json(request: Request, max_bytes: int) -> tuple[bytes, dict[str, Any]]:
    """The raw body (for idempotency fingerprints) and the JSON object it holds."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {content_type or 'nothing'!r}.", param="content-type"
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise RequestTooLarge(f"The request body is larger than {max_bytes} bytes.")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise RequestTooLarge(f"The request body is larger than {max_bytes} bytes.")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientClosedRequest("The client closed the connection while sending the body.") from None
    raw = b"".join(chunks)
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return raw, body


def endpoint_of(request: Request) -> str:
    """The route a request came by, as recorded on its usage record: the route's template, so
    that path parameters (a Vertex project name, say) can neither bloat nor overflow it."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else request.url.path[:200]
