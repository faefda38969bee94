"""What the audit log watches: the entity types operators change, their names in the log, and
their secret fields (written as "***").

Both the admin API's unit of work and the command line's hand this to `audit.watch`, so a change
is logged the same way whichever edge made it. (It lives here rather than at the edge because
both edges need it and the HTTP kit must not import the admin routers.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.billing.models import Account, LedgerEntry
from app.catalog.models import CatalogModel, Channel
from app.keys.models import ApiKey
from app.operators.audit import Described, Watched
from app.operators.models import Operator


def _credit_change(entry: LedgerEntry) -> Described | None:
    """A grant or adjustment, from its ledger entry (the balance moves by a bulk UPDATE the ORM
    does not see). Charges are the gateway's own bookkeeping, not an operator's change."""
    if entry.kind not in ("grant", "adjustment"):
        return None
    changes: dict[str, list[Any]] = {
        "balance": [entry.balance_after - entry.amount, entry.balance_after],
        "amount": [None, entry.amount],
        "note": [None, entry.note],
    }
    return entry.kind, entry.account_id, changes


AUDITED: Mapping[type[Any], Watched] = {
    Account: Watched("account", frozenset({"webhook_secret", "previous_webhook_secret"})),
    LedgerEntry: Watched("account", as_change=_credit_change),
    ApiKey: Watched("key", frozenset({"key_hash"})),
    CatalogModel: Watched("model"),
    Channel: Watched("channel", frozenset({"auth"})),
    Operator: Watched("operator", frozenset({"token_hash"})),
}
ENTITIES = tuple(sorted({watched.entity for watched in AUDITED.values()}))
