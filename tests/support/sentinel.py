"""A loopback server that counts the connections it receives: a URL the SSRF guard refuses is
aimed at it, so a guard that let the connection through is caught even when the request fails."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class ConnectionSentinel:
    """Counts connections; answers each with `reply` (raw HTTP) when given, else just closes."""

    def __init__(self, reply: bytes | None = None) -> None:
        self.reply = reply
        self.connections = 0
        self.port = 0

    async def on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.reply is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await reader.readuntil(b"\r\n\r\n")
                writer.write(self.reply)
                await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def watching(host: str, reply: bytes | None = None) -> AsyncIterator[ConnectionSentinel]:
    """A sentinel on `host`, and on [::1] at the same port where the machine has IPv6 loopback,
    so IPv6 spellings of loopback are watched too."""
    sentinel = ConnectionSentinel(reply)
    servers = [await asyncio.start_server(sentinel.on_connect, host, 0)]
    sentinel.port = servers[0].sockets[0].getsockname()[1]
    with contextlib.suppress(OSError):
        servers.append(await asyncio.start_server(sentinel.on_connect, "::1", sentinel.port))
    try:
        yield sentinel
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()
