"""Which role each admin route needs: the one place that says it.

The policy is a default plus exceptions. Reading (GET, HEAD) needs `viewer`, anything else needs
`admin`; the exceptions below let `finance` grant credits, set budgets, export and reconcile, as
the contract says ("finance reads, grants credits, sets budgets and exports"). A route nobody
listed gets the default, so a new write route is admin-only until someone decides otherwise.

The check runs in the admin guard (app/http/deps.py), before the route looks anything up: a role
that may not do something gets 403 whether or not the object exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import BaseModel

from app.errors import Forbidden
from app.operators.roles import Role, allows
from app.operators.service import Identity

READS = frozenset({"GET", "HEAD"})

# (method, route path template) → the least role, where it differs from the default.
EXCEPTIONS: Mapping[tuple[str, str], Role] = {
    ("POST", "/admin/accounts/{account_id}/credits"): "finance",
    # Finance may send these two, but change only what FINANCE_FIELDS lists (checked in the route,
    # which alone knows what a body changes).
    ("PATCH", "/admin/accounts/{account_id}"): "finance",
    ("PATCH", "/admin/keys/{key_id}"): "finance",
    # Reads, but of a provider's invoice: it changes nothing.
    ("POST", "/admin/reconcile"): "finance",
    # Exports are finance's: a viewer reads reports and the request log, not whole-period dumps.
    # (`GET /admin/usage?format=csv` is the grouped report a viewer may read, as CSV: viewer.)
    ("GET", "/admin/usage/export"): "finance",
    ("GET", "/admin/attempts/export"): "finance",
    ("GET", "/admin/ledger/export"): "finance",
}

# What a finance operator may change with the PATCH routes above.
FINANCE_FIELDS = frozenset({"budget", "alert_below"})


def needed_role(method: str, path: str) -> Role:
    """The least role that may call `method` on the route whose path template is `path`."""
    method = method.upper()
    found = EXCEPTIONS.get(("GET" if method == "HEAD" else method, path))
    if found is not None:
        return found
    return "viewer" if method in READS else "admin"


def check_role(identity: Identity, method: str, path: str) -> None:
    needed = needed_role(method, path)
    if not allows(identity.role, needed):
        raise Forbidden(
            f"{method.upper()} {path} needs the {needed} role; {_who(identity)} has the {identity.role} role."
        )


def check_changes(identity: Identity, changed: Iterable[str]) -> None:
    """A finance operator may change only FINANCE_FIELDS; an admin anything. 403 naming the rest."""
    if allows(identity.role, "admin"):
        return
    refused = sorted(set(changed) - FINANCE_FIELDS)
    if refused:
        raise Forbidden(
            f"The {identity.role} role may change only {', '.join(sorted(FINANCE_FIELDS))}; "
            f"changing {', '.join(refused)} needs the admin role.",
            param=refused[0],
        )


def changed_fields(body: BaseModel, current: object) -> set[str]:
    """The fields a PATCH body sent with a value other than `current`'s (a field `current` has no
    attribute for, like `budget`, counts as changed). A body copied from GET changes nothing it
    left alone, so finance may send one back with a new budget."""
    missing = object()
    return {name for name in body.model_fields_set if getattr(body, name) != getattr(current, name, missing)}


def shows_secrets(identity: Identity) -> bool:
    """Only admins read secrets (an account's webhook secret); viewers and finance never do."""
    return allows(identity.role, "admin")


def _who(identity: Identity) -> str:
    return f"operator {identity.name!r}" if identity.operator_id else identity.name
