"""One place that turns every failure into an error body.

Caller and admin routes answer the contract's `{"error": {"message", "type", "code", "param",
"request_id"}}`. A route of another wire format (the Google relay) is a `WireRoute` that renders
its own body; the handlers below ask the matched route, so every error on it (auth, body, a 500)
comes back in its format.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.errors import GatewayError, InternalError, InvalidRequest, InvalidValue, NotFound
from app.observability.logs import note

log = logging.getLogger("app.errors")


def request_id_of(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def contract_error_body(error: GatewayError, request_id: str | None) -> dict[str, object]:
    return {
        "error": {
            "message": error.message,
            "type": error.type,
            "code": error.code,
            "param": error.param,
            "request_id": request_id,
        }
    }


class WireRoute(APIRoute):
    """A route whose errors are rendered in its own wire format; subclasses override `error_body`
    and serve as an `APIRouter(route_class=...)`."""

    def error_body(self, error: GatewayError, request_id: str | None) -> dict[str, object]:
        return contract_error_body(error, request_id)


def error_response(request: Request, error: GatewayError) -> Response:
    request_id = request_id_of(request)
    route = request.scope.get("route")
    if isinstance(route, WireRoute):
        body = route.error_body(error, request_id)
    else:
        body = contract_error_body(error, request_id)
    headers = dict(error.headers)
    note(error_code=error.code)  # for the request's access line
    if request_id:
        # Set here too: a 500 is rendered outside the middleware that normally adds it.
        headers["x-request-id"] = request_id
        client_id = request.scope.get("state", {}).get("client_request_id")
        if client_id:
            headers["x-client-request-id"] = client_id
    return Response(orjson.dumps(body), status_code=error.status, media_type="application/json", headers=headers)


def describe_validation_errors(errors: Sequence[Any]) -> GatewayError:
    """The first pydantic error as a 400 that names the offending field."""
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    param = ".".join(loc) or None
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        return InvalidRequest(f"Unknown parameter: {param!r}.", param=param)
    if kind == "missing":
        return InvalidRequest(f"Missing required parameter: {param!r}.", param=param)
    if kind in ("json_invalid", "model_attributes_type") or param is None:
        return InvalidRequest(f"The request body is not valid: {first.get('msg', 'invalid JSON')}.")
    return InvalidValue(f"Invalid value for {param!r}: {first.get('msg', 'invalid')}.", param=param)


def install_error_handlers(app: FastAPI) -> None:
    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return error_response(request, exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(request, describe_validation_errors(exc.errors()))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            error: GatewayError = NotFound(f"No route {request.method} {request.url.path}.")
        else:
            error = GatewayError(str(exc.detail), status=exc.status_code, code="invalid_request")
        return error_response(request, error)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"request_id": request_id_of(request)})
        return error_response(request, InternalError())

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
