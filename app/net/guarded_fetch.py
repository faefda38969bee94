"""One guarded GET for every URL an upstream hands the gateway (images that arrive as URLs).

The URL is someone else's choice, so it gets the callbacks' SSRF rules: http(s) only, parsed
strictly, resolved once, every address checked (the operator's
`GATEWAY_CALLBACK_ALLOW_NETWORKS` opens the same ranges here), and the connection goes to the
checked address. No redirect is followed at all: a 3xx could point anywhere, the gateway's own
network included, and "same host only" would still need a second check and connection for
little gain. The body is capped while it streams (decoded bytes, so compression cannot dodge the
cap), and the whole exchange, reading included, is bounded by one deadline.

Nothing of the caller's or the channel's goes out: the request carries only the headers built
here. Errors never quote the URL, which is often pre-signed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from app.net.pinned import pinned_request
from app.net.ssrf import HostUnresolvable, Networks, Resolver, URLRefused, parse_guarded_url, resolve_guarded_url

MAX_FETCH_BYTES = 50 * 1024 * 1024  # a 4K PNG is ~25 MB; anything larger is not an image we asked for
USER_AGENT = "image-gateway-fetch/1"


class FetchFailed(Exception):
    """The URL could not be fetched; the message says why without quoting it. `refused` is set
    when the SSRF guard refused it and no connection was attempted."""

    def __init__(self, reason: str, *, refused: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refused = refused


@dataclass(frozen=True)
class GuardedFetcher:
    """`http` must be a client that honours the `sni_hostname` extension and ignores proxy settings
    (httpx's own transport, `trust_env=False`), like the callbacks' client."""

    http: httpx.AsyncClient
    allow_networks: Networks
    resolver: Resolver | None = None
    max_bytes: int = MAX_FETCH_BYTES

    async def get(self, url: str, *, timeout_s: float, accept: str = "*/*") -> bytes:
        """The body of a 200 answer to GET `url`, or FetchFailed."""
        try:
            parsed = parse_guarded_url(url)
            async with asyncio.timeout(timeout_s):
                target = await resolve_guarded_url(parsed, self.allow_networks, self.resolver)
                request = pinned_request("GET", target, {"accept": accept, "user-agent": USER_AGENT}, timeout_s)
                response = await self.http.send(request, stream=True, follow_redirects=False)
                try:
                    if 300 <= response.status_code < 400:
                        raise FetchFailed(f"it redirected (HTTP {response.status_code}); redirects are not followed")
                    if response.status_code != 200:
                        raise FetchFailed(f"it answered HTTP {response.status_code}")
                    return await self._read_capped(response)
                finally:
                    await response.aclose()
        except HostUnresolvable as exc:
            raise FetchFailed(str(exc)) from None
        except URLRefused as exc:
            raise FetchFailed(f"refused by the SSRF guard: {exc}", refused=True) from None
        except (TimeoutError, httpx.TimeoutException):
            raise FetchFailed(f"it did not answer within {timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchFailed(f"the exchange failed ({type(exc).__name__})") from None

    async def _read_capped(self, response: httpx.Response) -> bytes:
        too_large = FetchFailed(f"it is larger than {self.max_bytes} bytes")
        declared = response.headers.get("content-length", "")
        # ASCII digits only, and never int() of a huge one: a hostile header must not raise here.
        if declared.isascii() and declared.isdigit() and (len(declared) > 15 or int(declared) > self.max_bytes):
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)
