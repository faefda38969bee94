"""Dependencies of the edge's routes: the gateway, the admin guard and the admin's unit of work.

Routes take the gateway as a `GatewayDep` parameter, so only this kit (and the app factory) knows
where the runtime lives.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AdminDisabled, AdminUnauthorized
from app.runtime import Gateway, gateway_of


async def the_gateway(request: Request) -> Gateway:
    # async: FastAPI would run a plain function in a worker thread, on every request.
    return gateway_of(request)


def require_admin(request: Request) -> Gateway:
    gateway = gateway_of(request)
    token = gateway.settings.admin_token
    if token is None:
        raise AdminDisabled("The admin API is disabled: set GATEWAY_ADMIN_TOKEN to enable it.")
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise AdminUnauthorized("Missing or wrong admin token (Authorization: Bearer $GATEWAY_ADMIN_TOKEN).")
    return gateway


async def unit_of_work(gateway: Annotated[Gateway, Depends(require_admin)]) -> AsyncIterator[AsyncSession]:
    """The request scope owns the transaction: services flush, this commits (before the response
    is sent, thanks to scope="function" below) or rolls back on error. Admin writes change keys,
    models and channels, so this replica's caches are dropped once they are committed."""
    async with gateway.db.transaction() as session:
        yield session
    # After the commit, so no request can cache the old state again.
    gateway.invalidate_caches()


GatewayDep = Annotated[Gateway, Depends(the_gateway)]
AdminGateway = Annotated[Gateway, Depends(require_admin)]
AdminSession = Annotated[AsyncSession, Depends(unit_of_work, scope="function")]
