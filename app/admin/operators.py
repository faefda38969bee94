"""Admin routes for named operators: people with their own admin token and a role.

The token is shown once, in the answer that creates it; only its SHA-256 is stored. Revoking an
operator keeps its row (the audit log names it) and refuses its token at once on this replica,
within GATEWAY_CACHE_TTL_S on the others.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.admin.types import Text
from app.http.deps import AdminSession
from app.operators import service
from app.operators.models import Operator
from app.operators.roles import Role

router = APIRouter(prefix="/admin/operators", tags=["admin: operators"])


class OperatorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text = Field(min_length=1, max_length=200, description='Unique; the audit log\'s actor. Not "root".')
    role: Role = Field(
        description="viewer: reads everything but secrets. finance: also grants credits, sets budgets, "
        "exports and reconciles. admin: everything."
    )


class OperatorOut(BaseModel):
    id: str
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, operator: Operator) -> OperatorOut:
        return cls(
            id=operator.id,
            name=operator.name,
            role=operator.role,
            created_at=operator.created_at,
            revoked_at=operator.revoked_at,
        )


class OperatorCreated(BaseModel):
    id: str
    name: str
    role: str
    token: str = Field(description="The operator's admin token (igwop_…). Shown only here; store it now.")
    created_at: datetime


class OperatorList(BaseModel):
    data: list[OperatorOut]


@router.post(
    "",
    status_code=201,
    response_model=OperatorCreated,
    summary="Create a named operator",
    description="Returns the operator's token, the only time it is shown. 409 `conflict` on a taken name. Admin only.",
)
async def create_operator(body: OperatorCreate, session: AdminSession) -> OperatorCreated:
    operator, token = await service.create_operator(session, body.name, body.role)
    return OperatorCreated(
        id=operator.id, name=operator.name, role=operator.role, token=token, created_at=operator.created_at
    )


@router.get(
    "",
    response_model=OperatorList,
    summary="List operators",
    description="Names and roles, never tokens. Revoked operators are listed with `include_revoked=true`.",
)
async def list_operators(session: AdminSession, include_revoked: bool = False) -> OperatorList:
    operators = await service.list_operators(session, include_revoked=include_revoked)
    return OperatorList(data=[OperatorOut.of(operator) for operator in operators])


@router.delete(
    "/{operator_id}",
    response_model=OperatorOut,
    summary="Revoke an operator",
    description=(
        "By id or name. The token is refused at once on this replica and within GATEWAY_CACHE_TTL_S "
        "on the others; the operator stays in the list with `include_revoked=true` and in the audit log. "
        "Admin only."
    ),
)
async def revoke_operator(operator_id: Text, session: AdminSession) -> OperatorOut:
    return OperatorOut.of(await service.revoke_operator(session, operator_id))
