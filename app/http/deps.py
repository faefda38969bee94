"""Dependencies of the edge's routes: the gateway, the admin guard and the admin's unit of work.

Routes take the gateway as a `GatewayDep` parameter, so only this kit (and the app factory) knows
where the runtime lives. The admin guard says who is calling (the root token or a named operator),
checks that identity's role against the route (app/http/admin_roles.py) before the route runs,
and leaves the identity on `request.state` for the unit of work, which audits its changes.
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
from app.http.admin_roles import check_role
from app.keys.secrets import KEY_PREFIX
from app.operators.audit import watch
from app.operators.audited import AUDITED
from app.operators.service import ROOT_IDENTITY, TOKEN_PREFIX, Identity
from app.runtime import Gateway, gateway_of

admin_log = logging.getLogger("app.admin")

# The credentials each route takes, declared for /openapi.json: they are its `securitySchemes`,
# and the Authorize button of /docs. They never refuse a request themselves (auto_error=False):
# require_admin and app.keys.auth do, with the contract's error bodies.
ADMIN_TOKEN = HTTPBearer(
    scheme_name="AdminToken",
    description=(
        "`GATEWAY_ADMIN_TOKEN` (the root token, role admin) or a named operator's token (`igwop_…`, "
        "`POST /admin/operators`), for every `/admin` route; the operator's role decides which."
    ),
    auto_error=False,
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


async def require_admin(
    request: Request, _documented: Annotated[HTTPAuthorizationCredentials | None, Security(ADMIN_TOKEN)]
) -> Gateway:
    """Who is calling, and may that role call this route? Runs before the route looks anything up,
    so a refused role learns nothing about the objects it named."""
    gateway = gateway_of(request)
    identity = await _identify(gateway, request)
    # FastAPI puts the matched route in the scope before solving dependencies: its path template
    # ("/admin/keys/{key_id}") is what the role table is keyed on.
    route = request.scope.get("route")
    check_role(identity, request.method, getattr(route, "path", request.url.path))
    request.state.identity = identity
    return gateway


async def _identify(gateway: Gateway, request: Request) -> Identity:
    root = gateway.settings.admin_token
    if root is None:
        # Without a root token the admin API is off for everyone, operators included: turning it
        # off must not depend on revoking every operator first.
        raise AdminDisabled("The admin API is disabled: set GATEWAY_ADMIN_TOKEN to enable it.")
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    presented = presented.strip()
    if scheme.lower() == "bearer" and presented:
        if hmac.compare_digest(presented.encode(), root.encode()):
            return ROOT_IDENTITY
        if presented.startswith(TOKEN_PREFIX):
            identity = await gateway.operators.lookup(presented)
            if identity is None:
                raise AdminUnauthorized("Unknown or revoked operator token.")
            return identity
        if presented.startswith(KEY_PREFIX):
            raise AdminUnauthorized(
                "This is a gateway key (igw_…), for the caller API; the admin API takes "
                "GATEWAY_ADMIN_TOKEN or an operator token (igwop_…)."
            )
    raise AdminUnauthorized(
        "Missing or wrong admin token (Authorization: Bearer $GATEWAY_ADMIN_TOKEN or an operator token)."
    )


async def admin_identity(request: Request, _: Annotated[Gateway, Depends(require_admin)]) -> Identity:
    """The identity require_admin found (it runs once per request; FastAPI caches it)."""
    identity: Identity = request.state.identity
    return identity


async def unit_of_work(
    request: Request,
    response: Response,
    gateway: Annotated[Gateway, Depends(require_admin)],
    identity: Annotated[Identity, Depends(admin_identity)],
) -> AsyncIterator[AsyncSession]:
    """The request scope owns the transaction: services flush, this commits (before the response
    is sent, thanks to scope="function" below) or rolls back on error. Every change to an audited
    entity is written to the audit log in the same transaction, so a change rolled back leaves no
    entry. Admin writes change keys, models, channels and operators, so this replica's caches are
    dropped once they are committed, and each committed change is logged."""
    created: list[str] = []
    async with gateway.db.transaction() as session:
        watch(session, identity.name, AUDITED)
        event.listen(session.sync_session, "after_flush", _collect_created(created))
        yield session
    if request.method not in ("GET", "HEAD"):
        # After the commit, so no request can cache the old state again. Reads change nothing:
        # dropping the caches on them would send every caller's next key lookup to the database.
        gateway.invalidate_caches()
        _log_admin_change(request, response, created, identity)


def _collect_created(into: list[str]) -> Callable[[Session, UOWTransaction], None]:
    """An `after_flush` listener noting the ids of the rows a unit of work inserts (the entity a
    POST created has no id in its path)."""

    def collect(session: Session, _: UOWTransaction) -> None:
        into.extend(str(row.id) for row in session.new if isinstance(getattr(row, "id", None), str))

    return collect


def _log_admin_change(request: Request, response: Response, created: list[str], identity: Identity) -> None:
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
            "actor": identity.name,
            "role": identity.role,
            "status": response.status_code or getattr(route, "status_code", None) or 200,
        },
    )


GatewayDep = Annotated[Gateway, Depends(the_gateway)]
AdminGateway = Annotated[Gateway, Depends(require_admin)]
AdminSession = Annotated[AsyncSession, Depends(unit_of_work, scope="function")]
AdminIdentity = Annotated[Identity, Depends(admin_identity)]
