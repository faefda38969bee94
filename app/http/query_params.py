"""A dependency that refuses query parameters the route does not take.

FastAPI ignores unknown query parameters, so `?groupby=model` (a typo of `group_by`) would answer
an ungrouped report as if it had been asked for, and finance would read the wrong numbers. Routes
where a misspelt parameter changes the answer add `OnlyKnownQuery` to their `dependencies`:

    @router.get("/usage", dependencies=[Depends(require_admin), OnlyKnownQuery])

The parameters a route takes are read from its own signature and its dependencies', so the list
can never drift from what the route declares.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant

from app.errors import InvalidRequest


def query_names(dependant: Dependant) -> set[str]:
    """The query parameter names (aliases included) of a route and all its dependencies."""
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= query_names(sub)
    return names


async def reject_unknown_query(request: Request) -> None:
    dependant: Dependant | None = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None or not request.query_params:
        return
    known = query_names(dependant)
    for name in request.query_params:
        if name not in known:
            shown = name[:100]  # the caller's text, echoed: bounded
            raise InvalidRequest(
                f"Unknown parameter {shown!r}; this route takes {', '.join(sorted(known)) or 'none'}.",
                param=shown,
            )


OnlyKnownQuery = Depends(reject_unknown_query)
