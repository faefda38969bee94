"""Reading a caller's JSON body with the checks every POST route shares."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from app.errors import InvalidRequest, InvalidValue, RequestTooLarge, UnsupportedMediaType
from app.http.disconnect import ClientClosedRequest


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
    raw = await read_bounded(request, max_bytes, f"The request body is larger than {max_bytes} bytes.")
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    # JSON may carry U+0000 as "\u0000"; PostgreSQL text cannot store it, and no prompt needs it.
    if b"\\u0000" in raw:
        field = _field_with_nul(body)
        if field is not None:
            raise InvalidValue(f"{field} contains a NUL character (U+0000); remove it.", param=field)
    return raw, body


def _field_with_nul(value: Any, path: str = "") -> str | None:
    """The dotted name of the first string (key or value) holding U+0000, or None."""
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                return path or "body"
            found = _field_with_nul(item, name)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _field_with_nul(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def endpoint_of(request: Request) -> str:
    """The route a request came by, as recorded on its usage record: the route's template, so
    that path parameters (a Vertex project name, say) can neither bloat nor overflow it."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else request.url.path[:200]


async def read_bounded(request: Request, max_bytes: int, too_large: str) -> bytes:
    """The whole body, refused with 413 `too_large` as soon as it passes `max_bytes` (declared or
    streamed), and a 499 when the client leaves while sending it."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise RequestTooLarge(too_large)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise RequestTooLarge(too_large)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientClosedRequest("The client closed the connection while sending the body.") from None
    return b"".join(chunks)
