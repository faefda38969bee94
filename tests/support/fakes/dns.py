"""Fake DNS for the SSRF guard's tests."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


@dataclass
class FakeResolver:
    """DNS for tests: fixed answers per name, every lookup recorded, unknown names fail like NXDOMAIN."""

    records: dict[str, list[str]]
    lookups: list[str] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.records:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.records[host]
