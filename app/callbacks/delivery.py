"""One callback delivery attempt: POST the body to the checked address and classify the answer.

`deliver` connects to the IP literal that the SSRF guard approved and never resolves the name
again; the `Host` header and (for https) the TLS server name carry the original host, so virtual
hosting and certificate checks still work against the name. Redirects are never followed: a 3xx
could point anywhere, including inside the gateway's network.

Retrying, backoff and recording attempts belong to the caller; an outcome is data, never an
exception.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

import httpx

from app.net.pinned import pinned_request
from app.net.ssrf import (
    HostUnresolvable,
    Networks,
    ResolvedURL,
    Resolver,
    URLRefused,
    parse_guarded_url,
    resolve_guarded_url,
)

USER_AGENT = "image-gateway-callbacks/1"
# Enough of a receiver's error body to diagnose it; the rest is not ours to keep.
REASON_BODY_CHARS = 200

OutcomeKind = Literal["delivered", "refused", "dns", "timeout", "connect", "redirect", "http_status", "transport"]


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one attempt achieved. `kind` is stable for code; `reason` is a short sentence for people."""

    kind: OutcomeKind
    reason: str
    status_code: int | None = None
    duration_ms: int = 0

    @property
    def delivered(self) -> bool:
        return self.kind == "delivered"


async def deliver(
    http: httpx.AsyncClient, target: ResolvedURL, body: bytes, headers: dict[str, str], timeout_s: float
) -> DeliveryOutcome:
    """POST `body` to the checked address of `target`; any 2xx is delivered, anything else is not."""
    started = time.monotonic()
    request = _build_request(target, body, headers, timeout_s)
    try:
        # The overall deadline also bounds a receiver that trickles bytes to dodge the read timeout.
        async with asyncio.timeout(timeout_s):
            response = await http.send(request, stream=True, follow_redirects=False)
            try:
                snippet = b"" if response.is_success else await _read_prefix(response)
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        return _outcome(started, "timeout", f"the receiver did not answer within {timeout_s:g} s")
    except httpx.ConnectError as exc:
        return _outcome(started, "connect", f"could not connect to the receiver ({_short(str(exc)) or 'refused'})")
    except httpx.HTTPError as exc:
        return _outcome(started, "transport", f"the exchange with the receiver failed ({type(exc).__name__})")
    status = response.status_code
    if response.is_success:
        return _outcome(started, "delivered", f"the receiver answered {status}", status)
    if 300 <= status < 400:
        location = _short(response.headers.get("location", ""))
        return _outcome(
            started,
            "redirect",
            f"the receiver redirected ({status}) to {location!r}; redirects are not followed",
            status,
        )
    text = _short(snippet.decode("utf-8", errors="replace"))
    return _outcome(started, "http_status", f"the receiver answered {status}" + (f": {text}" if text else ""), status)


async def guarded_deliver(
    http: httpx.AsyncClient,
    url: str,
    allow_networks: Networks,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float,
    resolver: Resolver | None = None,
) -> DeliveryOutcome:
    """Check `url` again now (DNS may have changed since submission), then deliver to the checked address.

    A refused or unresolvable URL yields an outcome without any connection being attempted.
    """
    started = time.monotonic()
    try:
        parsed = parse_guarded_url(url)
        async with asyncio.timeout(timeout_s):
            target = await resolve_guarded_url(parsed, allow_networks, resolver)
    except HostUnresolvable as exc:
        return _outcome(started, "dns", str(exc))
    except URLRefused as exc:
        return _outcome(started, "refused", str(exc))
    except TimeoutError:
        return _outcome(started, "dns", f"resolving the callback host took longer than {timeout_s:g} s")
    remaining = max(timeout_s - (time.monotonic() - started), 0.001)
    outcome = await deliver(http, target, body, headers, remaining)
    return DeliveryOutcome(outcome.kind, outcome.reason, outcome.status_code, _elapsed_ms(started))


def _build_request(target: ResolvedURL, body: bytes, headers: dict[str, str], timeout_s: float) -> httpx.Request:
    merged = {"content-type": "application/json", "user-agent": USER_AGENT}
    merged.update({name.lower(): value for name, value in headers.items()})
    return pinned_request("POST", target, merged, timeout_s, content=body)


async def _read_prefix(response: httpx.Response) -> bytes:
    prefix = b""
    async for chunk in response.aiter_bytes():
        prefix += chunk
        if len(prefix) >= REASON_BODY_CHARS * 4:
            break
    return prefix


def _short(text: str) -> str:
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= REASON_BODY_CHARS else flat[: REASON_BODY_CHARS - 1] + "…"


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _outcome(started: float, kind: OutcomeKind, reason: str, status: int | None = None) -> DeliveryOutcome:
    return DeliveryOutcome(kind=kind, reason=reason, status_code=status, duration_ms=_elapsed_ms(started))
