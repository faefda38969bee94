"""Imports every ORM model so that `Base.metadata` is complete (Alembic and tests use it)."""

from app.accounts.models import Account
from app.billing.models import LedgerEntry, UsageRecord
from app.catalog.models import CatalogModel, Channel
from app.db import Base
from app.keys.models import ApiKey

__all__ = ["Account", "ApiKey", "Base", "CatalogModel", "Channel", "LedgerEntry", "UsageRecord"]
