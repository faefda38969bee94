"""Calling an upstream over HTTP and classifying what went wrong, once for every adapter.

Adapters build the request and parse a successful body; everything between (timeouts, status
codes, Retry-After, unreadable bodies) is decided here so routing sees only typed errors.
"""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from app.providers.errors import UpstreamAmbiguous, UpstreamError, UpstreamRejected, UpstreamRetryable

MAX_RESPONSE_BYTES = 200 * 1024 * 1024  # four 2K PNGs in base64 are ~30 MB; far above that is a broken upstream
# How long an upstream's Retry-After is believed: a longer wait is an outage, not a rate limit.
# (What callers are told is capped further, at app.errors.MAX_RETRY_AFTER_S.)
MAX_UPSTREAM_RETRY_AFTER_S = 3600
MAX_HTTP_DATE_CHARS = 64  # the longest valid form (RFC 850 with "Wednesday") is 38


async def post_json(
    http: httpx.AsyncClient,
    url: str,
    *,
    body: dict[str, Any],
    headers: dict[str, str],
    params: dict[str, str] | None = None,
    timeout_s: float,
) -> bytearray:
    """POST `body` as JSON and return the successful answer's body, undecoded (adapters decode it
    with app/providers/answer_json.py), or raise a typed upstream error."""
    content = orjson.dumps(body)
    request = http.build_request(
        "POST",
        url,
        content=content,
        params=params,
        headers={"content-type": "application/json", "accept": "application/json", **headers},
        timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
    )
    return await send(http, request)


async def post_form(
    http: httpx.AsyncClient,
    url: str,
    *,
    fields: list[tuple[str, str]],
    headers: dict[str, str],
    timeout_s: float,
) -> bytearray:
    """POST `fields` as multipart/form-data (text fields only: no filename, no per-part type, as
    an HTML form sends them) and return the successful answer's body, or a typed upstream error."""
    request = http.build_request(
        "POST",
        url,
        # httpx writes multipart only when given parts; a part with no filename is a plain field.
        files=[(name, (None, value.encode())) for name, value in fields],
        headers={"accept": "application/json", **headers},
        timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
    )
    return await send(http, request)


async def send(http: httpx.AsyncClient, request: httpx.Request) -> bytearray:
    """Send a built upstream request and classify whatever goes wrong (see post_json)."""
    try:
        response = await http.send(request, stream=True)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise UpstreamRetryable(f"could not connect to the upstream ({type(exc).__name__})") from None
    except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
        # The request went out; the upstream may be generating (and billing) it.
        raise UpstreamAmbiguous(f"the upstream did not answer in time ({type(exc).__name__})") from None
    except httpx.RemoteProtocolError:
        raise UpstreamAmbiguous("the upstream closed the connection without an answer") from None
    except httpx.HTTPError as exc:
        raise UpstreamRetryable(f"upstream transport error ({type(exc).__name__})") from None
    try:
        raw = await _read_capped(response)
    except httpx.TimeoutException:
        raise UpstreamAmbiguous("the upstream stopped sending its answer") from None
    except httpx.HTTPError as exc:
        raise UpstreamAmbiguous(f"the upstream answer broke off ({type(exc).__name__})") from None
    finally:
        await response.aclose()
    if response.status_code >= 400:
        raise status_error(response.status_code, response.headers, raw)
    return raw


async def _read_capped(response: httpx.Response) -> bytearray:
    # One growing buffer (realloc extends it in place), not a list of chunks joined at the end:
    # a 20 MB answer is then held once, not twice, while it arrives.
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise UpstreamRetryable(f"the upstream answer is larger than {MAX_RESPONSE_BYTES} bytes")
    return body


def status_error(status: int, headers: httpx.Headers, raw: bytes | bytearray) -> UpstreamRetryable | UpstreamRejected:
    message, code = upstream_error_fields(raw)
    detail = f": {message}" if message else ""
    if status == 429:
        return UpstreamRetryable(
            f"the upstream is rate limiting (429){detail}",
            status=status,
            retry_after_s=retry_after(headers),
            upstream_code=code,
        )
    if status >= 500 or status in (408, 409):
        return UpstreamRetryable(f"the upstream failed ({status}){detail}", status=status, upstream_code=code)
    if status == 404:
        text = (
            "the upstream does not know this model (404): it may have been retired upstream; "
            f"the operator must remap the channel{detail}"
        )
    elif status in (401, 403):
        text = f"the upstream refused the channel's credentials ({status}); the operator must fix the channel{detail}"
    else:
        text = f"the upstream rejected the request ({status}){detail}"
    return UpstreamRejected(text, status=status, upstream_code=code)


# Where status_error's messages put the upstream's own words: after the operator's instruction for
# 401/403/404 (their status is followed by more of ours), after "(status): " otherwise.
DETAIL_MARKS = ("the operator must fix the channel: ", "the operator must remap the channel: ", "): ")


def upstream_detail(error: UpstreamError) -> str:
    """The upstream's own words in a message status_error wrote (already redacted if the error
    was), or "" when it gave none: what an adapter keeps when it re-words a status."""
    for mark in DETAIL_MARKS:
        _, found, detail = error.message.partition(mark)
        if found:
            return detail
    return ""


def upstream_error_fields(raw: bytes | bytearray) -> tuple[str, str | None]:
    """The message and code of an upstream error body (Google's or OpenAI's shape, or xAI's flat one).

    Only these fields are ever passed on, never the body as a whole; routing still scrubs the
    channel's credentials from the message before anyone sees it.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "", None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str) and isinstance(body, dict):
        # xAI's flat shape: {"code": "400", "error": "Argument not supported: size"}.
        code = body.get("code")
        return error.strip()[:1000], code if isinstance(code, str) else None
    if not isinstance(error, dict):
        return "", None
    message = error.get("message")
    code = error.get("code") if isinstance(error.get("code"), str) else error.get("status")
    text = message.strip()[:1000] if isinstance(message, str) else ""
    return text, code if isinstance(code, str) else None


def retry_after(headers: httpx.Headers) -> float | None:
    """The upstream's Retry-After in seconds (RFC 9110: integer seconds or an HTTP-date), within
    0..MAX_UPSTREAM_RETRY_AFTER_S; None when absent or unparseable. Never raises: the header is whatever
    the upstream (or a relay, or an attacker in front of it) chose to send."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        # Cap the digits before int(): Python refuses to convert more than 4,300 of them.
        if len(value) > len(str(MAX_UPSTREAM_RETRY_AFTER_S)):
            return float(MAX_UPSTREAM_RETRY_AFTER_S)
        return float(min(int(value), MAX_UPSTREAM_RETRY_AFTER_S))
    at = http_date(value)
    if at is None:
        return None
    return min(float(MAX_UPSTREAM_RETRY_AFTER_S), max(0.0, at.timestamp() - time.time()))


def http_date(value: str) -> datetime | None:
    """An HTTP-date (IMF-fixdate, or the obsolete RFC 850 and asctime forms) as an aware datetime,
    or None for anything else, out-of-range fields included."""
    if len(value) > MAX_HTTP_DATE_CHARS:
        return None
    parts = email.utils.parsedate_tz(value)
    if parts is None:
        return None
    year, month, day, hour, minute, second = parts[:6]
    offset_s = parts[9] or 0  # asctime carries no zone: HTTP-dates are always GMT
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC) - timedelta(seconds=offset_s)
    except (ValueError, OverflowError):
        return None
