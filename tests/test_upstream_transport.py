"""The upstream client (httpx over aiohttp) against raw sockets on 127.0.0.1.

What routing relies on: a refused connection is safe to fail over, while a request that went out
and then lost its connection or its answer is ambiguous. And what callers rely on: big and
chunked answers arrive intact, connections are reused, and a connection the upstream closed
while idle is never used for the next call.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from app.providers.aiohttp_transport import AiohttpTransport, upstream_client
from app.providers.errors import UpstreamAmbiguous, UpstreamRetryable
from app.providers.upstream_http import post_json
from tests.support.processes import free_port
from tests.support.tls import self_signed, server_context

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    def __init__(self) -> None:
        self.connections = 0
        self.heads: list[bytes] = []


@asynccontextmanager
async def raw_server(handle: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[str, RawServer]]:
    seen = RawServer()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        try:
            await handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}/v1/predict", seen
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader, seen: RawServer) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    seen.heads.append(head)
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return await reader.readexactly(length)


def answer(body: bytes, status: int = 200) -> bytes:
    return b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        status,
        len(body),
        body,
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    http = upstream_client(max_connections=100, timeout=httpx.Timeout(5.0))
    yield http
    await http.aclose()


async def call(http: httpx.AsyncClient, url: str, timeout_s: float = 5.0) -> object:
    answer = await post_json(http, url, body={"prompt": "a cat"}, headers={"x-goog-api-key": "k"}, timeout_s=timeout_s)
    return orjson.loads(answer)


async def test_refused_connection_is_retryable(client: httpx.AsyncClient) -> None:
    with pytest.raises(UpstreamRetryable, match="could not connect"):
        await call(client, f"http://127.0.0.1:{free_port()}/v1/predict")


async def test_connection_closed_after_the_request_is_ambiguous(client: httpx.AsyncClient) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, seen)

    async with raw_server(hang_up) as (url, seen):
        with pytest.raises(UpstreamAmbiguous, match="closed the connection"):
            await call(client, url)


async def test_no_answer_in_time_is_ambiguous(client: httpx.AsyncClient) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, seen)
        await asyncio.sleep(3)

    async with raw_server(stall) as (url, seen):
        with pytest.raises(UpstreamAmbiguous, match="did not answer in time"):
            await call(client, url, timeout_s=0.3)


async def test_a_body_that_breaks_off_is_ambiguous(client: httpx.AsyncClient) -> None:
    async def short_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, seen)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"pred')
        await writer.drain()

    async with raw_server(short_body) as (url, seen):
        with pytest.raises(UpstreamAmbiguous, match="broke off"):
            await call(client, url)


async def test_big_and_chunked_answers_arrive_intact_over_one_connection(client: httpx.AsyncClient) -> None:
    image = b"QUJD" * 1_500_000  # 6 MB of base64
    big = orjson.dumps({"predictions": [{"bytesBase64Encoded": image.decode()}]})

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await read_request(reader, seen)
        assert orjson.loads(body) == {"prompt": "a cat"}
        writer.write(answer(big))
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
        for piece in (b'{"ok"', b": true}"):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()  # keep the connection until the client is done

    async with raw_server(serve) as (url, seen):
        first = await call(client, url)
        second = await call(client, url)
    assert first == {"predictions": [{"bytesBase64Encoded": image.decode()}]}
    assert second == {"ok": True}
    assert seen.connections == 1
    head = seen.heads[0].lower()
    assert head.count(b"content-length:") == 1 and head.count(b"user-agent:") == 1
    assert b"x-goog-api-key: k\r\n" in head and b"content-type: application/json\r\n" in head


async def test_a_connection_the_upstream_closed_while_idle_is_not_reused(client: httpx.AsyncClient) -> None:
    async def one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, seen)
        writer.write(answer(b'{"n": %d}' % seen.connections))
        await writer.drain()  # then close: the server's keep-alive ended

    async with raw_server(one_per_connection) as (url, seen):
        assert await call(client, url) == {"n": 1}
        await asyncio.sleep(0.2)
        assert await call(client, url) == {"n": 2}


async def test_upstream_error_status_keeps_its_message(client: httpx.AsyncClient) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, seen)
        writer.write(answer(b'{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}', 503))
        await writer.drain()

    async with raw_server(refuse) as (url, seen):
        with pytest.raises(UpstreamRetryable, match="overloaded") as failed:
            await call(client, url)
    assert failed.value.status == 503


async def test_behind_an_environment_proxy_httpx_keeps_its_own_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    direct = upstream_client(max_connections=10, timeout=httpx.Timeout(5.0))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    proxied = upstream_client(max_connections=10, timeout=httpx.Timeout(5.0))
    try:
        assert isinstance(direct._transport, AiohttpTransport)
        # httpx mounts the proxy for https:// URLs itself; aiohttp would bypass it.
        assert not isinstance(proxied._transport, AiohttpTransport)
        assert any(pattern.scheme == "https" for pattern in proxied._mounts)
    finally:
        await direct.aclose()
        await proxied.aclose()


async def test_https_upstreams_are_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, seen)
        writer.write(answer(b'{"ok": true}'))
        await writer.drain()

    tls = server_context(self_signed(tmp_path, "127.0.0.1"))
    untrusting = upstream_client(max_connections=10, timeout=httpx.Timeout(5.0))
    # Trusted the way an operator would point the process at a private CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))
    trusting = upstream_client(max_connections=10, timeout=httpx.Timeout(5.0))
    try:
        async with raw_server(serve, tls) as (url, seen):
            assert await call(trusting, url) == {"ok": True}
            with pytest.raises(UpstreamRetryable, match="could not connect"):
                await call(untrusting, url)
    finally:
        await trusting.aclose()
        await untrusting.aclose()
    assert len(seen.heads) == 1  # the unverified connection never got to send its request
