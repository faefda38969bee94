"""Requests that go to the address the SSRF guard checked, never to a fresh DNS answer.

The URL of the request holds the checked IP literal; the `Host` header and (for https) the TLS
server name carry the original host, so virtual hosting and certificate checks still work
against the name. Send these with a client whose transport honours httpx's `sni_hostname`
extension (httpx's own) and that ignores proxy settings (`trust_env=False`).
"""

from __future__ import annotations

import httpx

from app.net.ssrf import DEFAULT_PORTS, ResolvedURL

CONNECT_TIMEOUT_S = 10.0


def pinned_request(
    method: str, target: ResolvedURL, headers: dict[str, str], timeout_s: float, content: bytes | None = None
) -> httpx.Request:
    url = target.url
    address = httpx.URL(
        scheme=url.scheme,
        host=str(target.ip),
        port=None if url.port == DEFAULT_PORTS[url.scheme] else url.port,
        raw_path=url.target.encode("ascii"),
    )
    merged = {name.lower(): value for name, value in headers.items()}
    merged["host"] = url.host_header
    # A pooled connection is keyed by IP and port only: reusing one opened (and certificate-checked)
    # for another host name on the same address would skip the check for this name.
    merged["connection"] = "close"
    timeout = httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
    extensions: dict[str, object] = {"timeout": timeout.as_dict()}
    if url.scheme == "https" and url.ip is None:
        extensions["sni_hostname"] = url.host
    # Built directly rather than with http.build_request, so a client's default headers and
    # cookies never reach an address someone else chose.
    return httpx.Request(method, address, headers=merged, content=content, extensions=extensions)
