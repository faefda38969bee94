"""An httpx transport that moves the bytes with aiohttp.

Adapters keep talking to one `httpx.AsyncClient` (requests, responses, timeouts and errors are
httpx's); only the connection pool and the HTTP/1.1 reading underneath are aiohttp's. Measured
on the benchmark machine (tests/benchmarks/RESULTS.md): httpcore's pool scans every open
connection for every request, which was 30 % of the gateway's CPU with 1,500 upstream calls in
flight, and it reads a 1.5 MB answer in 64 KB pieces through several copies (1.8–2.7 ms of CPU,
against 1.0 ms here). Proxies are unaffected: httpx still routes proxied URLs through its own
transports, mounted ahead of this one.

Errors are translated to the httpx exceptions `upstream_http.post_json` classifies, keeping the
distinction that matters for money: failing to connect (nothing was sent, safe to fail over)
versus losing the connection or timing out after the request went out (ambiguous).
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx

# Most specific first: the first class an exception is an instance of decides.
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # waiting for a connection or connecting
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, unreachable, DNS, TLS handshake
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),  # sent, then no answer in time
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),  # sent, then the connection closed
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),  # the body broke off or was malformed
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # an unparseable status line or header
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientOSError, httpx.ReadError),  # reset or broken pipe on an open connection
    (aiohttp.ClientError, httpx.NetworkError),
    (TimeoutError, httpx.ReadTimeout),
)


@contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except httpx.HTTPError:
        raise
    except (TimeoutError, aiohttp.ClientError) as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(f"{type(exc).__name__}: {exc}", request=request) from exc
        raise


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors(self._request):
            # Whatever has arrived, in one piece: a 1.5 MB answer is a handful of chunks.
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # Reuses the connection when the body was read to the end, closes it otherwise.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Direct (unproxied) HTTP/1.1 for an `httpx.AsyncClient`; one aiohttp session per transport.

    The session is created on first use, inside the running event loop, and closed with the client.
    """

    def __init__(self, *, max_connections: int, keepalive_s: float = 30.0, verify: bool = True) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._ssl: ssl.SSLContext = httpx.create_ssl_context(verify=verify)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=0, keepalive_timeout=self._keepalive_s, ssl=self._ssl
            )
            # httpx already sets every header it means to send; aiohttp must not add its own
            # or undo the content encoding (httpx decodes it).
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding")
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        session = self._open()
        with _as_httpx_errors(request):
            content = await request.aread()
            response = await session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=content or None,
                allow_redirects=False,
                compress=None,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    # Waiting for a free connection plus connecting, like httpx's pool + connect.
                    connect=_sum(timeout.get("pool"), timeout.get("connect")),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _sum(*parts: float | None) -> float | None:
    return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)


def upstream_client(*, max_connections: int, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """The process-wide client for upstream calls.

    Behind an HTTP(S) proxy from the environment, httpx's own transport is used, since it knows
    how to route through one (proxies cost a hop anyway, and this transport speaks only direct).
    """
    if any(scheme != "no" for scheme in urllib.request.getproxies()):
        return httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=200),
            follow_redirects=False,
        )
    return httpx.AsyncClient(
        transport=AiohttpTransport(max_connections=max_connections), timeout=timeout, follow_redirects=False
    )
