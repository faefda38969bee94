"""A webhook receiver for tests: a minimal HTTP/1.1 server on 127.0.0.1 (plain or TLS) that keeps
each raw request (so a signature can be verified over the exact bytes) and answers as scripted."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from http import HTTPStatus


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Captured:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A minimal HTTP/1.1 receiver on 127.0.0.1 that records raw requests and answers as scripted."""

    def __init__(self, answer: Answer, tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.tls = tls
        self.connections = 0
        self.requests: list[Captured] = []
        self.server_names: list[str | None] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        if self.tls is not None:
            self.tls.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for handler in self._handlers:
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, target, _version = request_line.split(" ", 2)
            headers = {}
            for line in filter(None, lines):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Captured(method, target, headers, body))
            answer = self.answer
            await asyncio.sleep(answer.delay_s)
            extra = "".join(f"{name}: {value}\r\n" for name, value in answer.headers.items())
            status_line = f"HTTP/1.1 {answer.status} {HTTPStatus(answer.status).phrase}\r\n"
            framing = f"content-length: {len(answer.body)}\r\nconnection: close\r\n"
            writer.write((status_line + framing + extra + "\r\n").encode() + answer.body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self._handlers.discard(handler)


async def receiver(pool: list[Receiver], answer: Answer | None = None, tls: ssl.SSLContext | None = None) -> Receiver:
    started = Receiver(answer or Answer(), tls)
    await started.start()
    pool.append(started)
    return started
