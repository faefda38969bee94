"""What the PATCH bodies of accounts and keys share: read-only fields of the GET answer dropped,
anything else unknown refused, and the `budget` object in and out."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.admin.types import Amount, Credits
from app.billing.budgets import Budget, BudgetStatus


class PatchBody(BaseModel):
    """A PATCH accepts an object as GET returns it: read-only fields are dropped, not refused; any
    other unknown field is a 400 that names it. Only the fields sent change; null clears one."""

    model_config = ConfigDict(extra="forbid")
    READ_ONLY: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _drop_read_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in cls.READ_ONLY}
        return data

    def sent(self, name: str) -> bool:
        return name in self.model_fields_set


class BudgetIn(PatchBody):
    READ_ONLY = frozenset({"spent", "remaining", "resets_at"})
    credits: Amount = Field(description="Most credits the account or key may spend in one period (> 0).")
    period: Literal["day", "week", "month"] = Field(description="UTC calendar day, ISO week (from Monday) or month.")

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: Any) -> Any:
        # As a value error, the 400 names `budget` (a type error of a nested object names nothing).
        if not isinstance(data, dict):
            raise ValueError('must be an object {"credits": "500", "period": "day|week|month"} or null')
        return data

    @field_validator("credits")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        if value <= 0:
            raise ValueError("must be greater than zero (send budget: null to remove the budget)")
        return value

    def budget(self) -> Budget:
        return Budget(credits=self.credits, period=self.period)


class BudgetOut(BaseModel):
    credits: Credits
    period: str = Field(description="day | week | month")
    spent: Credits = Field(description="Charged in the current period, plus what running requests hold.")
    remaining: Credits = Field(description="What the current period may still spend.")
    resets_at: datetime = Field(description="When the next period starts (midnight UTC).")

    @classmethod
    def of(cls, status: BudgetStatus | None) -> BudgetOut | None:
        if status is None:
            return None
        return cls(
            credits=status.credits,
            period=status.period,
            spent=status.spent,
            remaining=status.remaining,
            resets_at=status.resets_at,
        )
