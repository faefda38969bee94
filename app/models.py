"""Imports every ORM model so that `Base.metadata` is complete (Alembic and tests use it)."""

from app.alerts.models import Alert
from app.billing.models import Account, BudgetSpend, LedgerEntry, UpstreamAttempt, UsageRecord
from app.catalog.models import CatalogModel, Channel
from app.db import Base
from app.files.models import InstanceSecret, StoredFile
from app.idempotency.models import IdempotentRequest
from app.keys.models import ApiKey
from app.operators.models import AuditEntry, Operator
from app.tasks.models import Task

__all__ = [
    "Account",
    "Alert",
    "ApiKey",
    "AuditEntry",
    "Base",
    "BudgetSpend",
    "CatalogModel",
    "Channel",
    "IdempotentRequest",
    "InstanceSecret",
    "LedgerEntry",
    "Operator",
    "StoredFile",
    "Task",
    "UpstreamAttempt",
    "UsageRecord",
]
