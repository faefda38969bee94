"""Disabling a channel whose upstream keeps refusing its credentials or no longer knows its model.

The circuit breaker only cools a channel: a revoked key would be tried again after every cooldown,
forever. An upstream 401/403 (credentials refused, or an account out of balance) or 404 (the
model was retired upstream) on `GATEWAY_AUTO_DISABLE_AFTER` calls in a row disables it instead,
with the reason in the channel and a `channel.disabled` alert, until an operator re-enables it.
Other failures (5xx, timeouts, 429) say nothing about the credentials: they neither count nor
reset. Channel tests (app/routing/channel_test.py) do not come through here: checking a channel
must not disable it, nor clear the record of a broken one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from app.catalog.auto_disable import count_refusal, reset_refusals
from app.db import Database
from app.specs import ChannelSpec

log = logging.getLogger("app.routing")


class ChannelFaults:
    """What the router reports about each call's credentials; counted in the database so that
    every replica adds to the same run.

    `on_change` is told after every write (the catalog cache's invalidate): this replica then
    routes around a channel it disabled at once, and knows the count it must reset.
    """

    def __init__(self, db: Database, disable_after: int, on_change: Callable[[], None]) -> None:
        self.db = db
        self.disable_after = disable_after  # 0: never disable automatically
        self.on_change = on_change

    async def refused(self, channel: ChannelSpec, status: int, message: str) -> None:
        """The upstream refused the channel itself (`message`: the attempt's error, scrubbed)."""
        if self.disable_after == 0:
            return
        try:
            async with self.db.transaction("normal") as session:
                counted = await count_refusal(session, channel.id, channel.name, status, message, self.disable_after)
        except SQLAlchemyError:
            # Bookkeeping about the channel, not the request: the request fails over regardless.
            log.exception("could not count a credential refusal of channel %s", channel.name)
            return
        self.on_change()
        if counted.disabled:
            log.error(
                "channel %s disabled: upstream answered %s on %s calls in a row; an operator must fix and re-enable it",
                channel.name,
                status,
                counted.failures,
                extra={"channel": channel.name, "http_status": status, "upstream_message": message},
            )

    async def worked(self, channel: ChannelSpec) -> None:
        """A call that the upstream answered: the credentials and the model are fine. Free
        unless the snapshot says refusals were counted."""
        if channel.credential_failures == 0:
            return
        try:
            async with self.db.transaction("normal") as session:
                await reset_refusals(session, channel.id)
        except SQLAlchemyError:
            log.exception("could not reset the credential refusals of channel %s", channel.name)
            return
        self.on_change()
