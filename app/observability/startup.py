"""The line a process writes when it starts: what it is configured to do, so an operator reading
the log sees at once which database, which channels, and whether only placeholders are served."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.settings import Settings
from app.specs import CatalogSnapshot, ChannelSpec

log = logging.getLogger("app.startup")
PLACEHOLDER_PROVIDER = "local"


def database_without_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"  # it would not have opened; never echo what it holds


async def log_startup(
    settings: Settings, catalog: Callable[[], Awaitable[CatalogSnapshot]], paths: Collection[str]
) -> None:
    """`catalog`: reads the current catalog; `paths`: the app's route templates (where /docs and
    /console are, when they are served)."""
    base = (settings.public_url or "").rstrip("/")
    try:
        enabled: list[ChannelSpec] | None = [channel for channel in (await catalog()).channels if channel.enabled]
    except Exception as exc:  # e.g. an unmigrated database: requests will say so, the start must not fail
        log.warning("the channels could not be read at start (%s)", type(exc).__name__)
        enabled = None
    log.info(
        "gateway started",
        extra={
            "url": settings.public_url or "(each request's Host; set GATEWAY_PUBLIC_URL to fix it)",
            "database": database_without_password(settings.database_url),
            "admin_api": "on" if settings.admin_token else "off (set GATEWAY_ADMIN_TOKEN)",
            "channels": None if enabled is None else [{"name": c.name, "provider": c.provider} for c in enabled],
            "docs": f"{base}/docs" if "/docs" in paths else None,
            "console": f"{base}/console" if "/console" in paths else None,
            "log_level": settings.log_level,
        },
    )
    if enabled is not None and all(channel.provider == PLACEHOLDER_PROVIDER for channel in enabled):
        what = (
            "only the built-in `local` channel serves: every image is a placeholder, not a generated picture"
            if enabled
            else "no channel is enabled: every generation request fails"
        )
        log.warning(
            "%s. Add a real channel (POST /admin/channels or `image-gateway channels add`).",
            what,
            extra={"channels": [c.name for c in enabled]},
        )
