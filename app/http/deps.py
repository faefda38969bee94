"""Dependencies of the edge's routes: the gateway, the admin guard and the admin's unit of work.

Routes take the gateway as a `GatewayDep` parameter, so only this kit (and the app factory) knows
where the runtime lives.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request, Response, Security
from fastapi.params import Depends as Dependency
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, UOWTransaction

from app.errors import AdminDisabled, AdminUnauthorized
from app.runtime import Gateway, gateway_of

admin_log = logging.getLogger("app.admin")

# The credentials each route takes, declared for /openapi.json: they are its `securitySchemes`,
# and the Authorize button of /docs. They never refuse a request themselves (auto_error=False):
# require_admin and app.keys.auth do, with the contract's error bodies.
ADMIN_TOKEN = HTTPBearer(
    scheme_name="AdminToken", description="`GATEWAY_ADMIN_TOKEN`, for every `/admin` route.", auto_error=False
)
GATEWAY_KEY = HTTPBearer(
    scheme_name="GatewayKey",
    bearerFormat="igw_…",
    description="A gateway key (`image-gateway keys create` or `POST /admin/keys`), for the caller API.",
    auto_error=False,
)
GOOGLE_API_KEY = APIKeyHeader(
    name="x-goog-api-key",
    scheme_name="GoogleApiKey",
    description="The gateway key as the google-genai SDK sends it (the Google relay also takes Bearer and `?key=`).",
    auto_error=False,
)
METRICS_TOKEN = HTTPBearer(
    scheme_name="MetricsToken", description="`GATEWAY_METRICS_TOKEN`, when it is set.", auto_error=False
)
# For `include_router(dependencies=…)`: a list of alternatives is an OR in OpenAPI.
CALLER_SECURITY: list[Dependency] = [Security(GATEWAY_KEY)]
GOOGLE_SECURITY: list[Dependency] = [Security(GOOGLE_API_KEY), Security(GATEWAY_KEY)]
METRICS_SECURITY: list[Dependency] = [Security(METRICS_TOKEN)]


async def the_gateway(request: Request) -> Gateway:
    # async: FastAPI would run a plain function in a worker thread, on every request.
    return gateway_of(request)


def require_admin(
    request: Request, _documented: Annotated[HTTPAuthorizationCredentials | None, Security(ADMIN_TOKEN)]
) -> Gateway:
    gateway = gateway_of(request)
    token = gateway.settings.admin_token
    if token is None:
        raise AdminDisabled("The admin API is disabled: set GATEWAY_ADMIN_TOKEN to enable it.")
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise AdminUnauthorized("Missing or wrong admin token (Authorization: Bearer $GATEWAY_ADMIN_TOKEN).")
    return gateway


async def unit_of_work(
    request: Request, response: Response, gateway: Annotated[Gateway, Depends(require_admin)]
) -> AsyncIterator[AsyncSession]:
    """The request scope owns the transaction: services flush, this commits (before the response
    is sent, thanks to scope="function" below) or rolls back on error. Admin writes change keys,
    models and channels, so this replica's caches are dropped once they are committed, and each
    committed change is logged."""
    created: list[str] = []
    async with gateway.db.transaction() as session:
        event.listen(session.sync_session, "after_flush", _collect_created(created))
        yield session
    # After the commit, so no request can cache the old state again.
    gateway.invalidate_caches()
    if request.method not in ("GET", "HEAD"):
        _log_admin_change(request, response, created)


def _collect_created(into: list[str]) -> Callable[[Session, UOWTransaction], None]:
    """An `after_flush` listener noting the ids of the rows a unit of work inserts (the entity a
    POST created has no id in its path)."""

    def collect(session: Session, _: UOWTransaction) -> None:
        into.extend(str(row.id) for row in session.new if isinstance(getattr(row, "id", None), str))

    return collect


def _log_admin_change(request: Request, response: Response, created: list[str]) -> None:
    route = request.scope.get("route")
    # The path's own id names what changed (the last one, e.g. a channel's rather than an account's),
    # else the first row the change created.
    path_ids = [str(value) for value in request.path_params.values()]
    admin_log.info(
        "admin change: %s %s",
        request.method,
        getattr(route, "path", request.url.path),
        extra={
            "method": request.method,
            "route": getattr(route, "path", None),
            "entity_id": path_ids[-1] if path_ids else (created[0] if created else None),
            "actor": "root",  # the one admin token; named operators come with roles
            "status": response.status_code or getattr(route, "status_code", None) or 200,
        },
    )


GatewayDep = Annotated[Gateway, Depends(the_gateway)]
AdminGateway = Annotated[Gateway, Depends(require_admin)]
AdminSession = Annotated[AsyncSession, Depends(unit_of_work, scope="function")]
