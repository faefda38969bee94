"""What each admin role may do. The roles are ordered: each may do everything the one before it may.

- `viewer` reads everything except secrets;
- `finance` also grants credits, sets budgets and alert thresholds, exports and reconciles;
- `admin` does everything, secrets included (the root GATEWAY_ADMIN_TOKEN is an admin).
"""

from __future__ import annotations

from typing import Literal

Role = Literal["viewer", "finance", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "finance", "admin")
ROOT = "root"  # the actor name of GATEWAY_ADMIN_TOKEN


def allows(held: str, needed: Role) -> bool:
    """True when a holder of role `held` may do what needs `needed`."""
    return held in ROLES and ROLES.index(held) >= ROLES.index(needed)
