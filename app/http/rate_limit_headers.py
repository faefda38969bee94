"""The `x-ratelimit-*` headers on every answer to a key with an `rpm`, in OpenAI's names and formats:

- `x-ratelimit-limit-requests`: the key's rpm;
- `x-ratelimit-remaining-requests`: what is left of it in the last minute's moving window;
- `x-ratelimit-reset-requests`: how long until the oldest request of that window leaves it and
  one more comes free, as a Go duration like OpenAI's (`"0s"`, `"20ms"`, `"1.5s"`, `"1m0s"`).

Three steps, one place that renders: `authenticate` notes a caller whose key has an rpm on the
request's facts (app/keys/auth.py); the key limiter notes the window when it takes or refuses one
of the key's requests (app/keys/limits.py), so a generation costs no extra read; and the request-id
middleware asks `rate_limit_headers` when the response starts. An answer the limiter did not
count (a read such as `GET /v1/tasks`, an idempotent replay, a body refused before the limiter)
has the window read then, without taking a request of it. A key without an rpm costs one dict
lookup; a Redis that cannot be asked costs the headers, never the answer.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Scope

from app.keys.auth import RPM_CALLER_FACT, Caller
from app.keys.limits import RPM_WINDOW_FACT, RpmWindow


async def rate_limit_headers(scope: Scope, facts: dict[str, Any]) -> dict[str, str]:
    """The headers for this request's answer; empty unless its caller's key has an rpm."""
    caller: Caller | None = facts.get(RPM_CALLER_FACT)
    if caller is None:
        return {}
    window: RpmWindow | None = facts.get(RPM_WINDOW_FACT)
    if window is None:
        gateway = getattr(scope["app"].state, "gateway", None) if "app" in scope else None
        if gateway is None:
            return {}
        window = await gateway.generation.limiter.rpm_window(caller)
        if window is None:
            return {}
    return {
        "x-ratelimit-limit-requests": str(window.limit),
        "x-ratelimit-remaining-requests": str(window.remaining),
        "x-ratelimit-reset-requests": go_duration(window.reset_s),
    }


def go_duration(seconds: float) -> str:
    """`seconds` as Go's `time.Duration` prints it (OpenAI's reset format), to the millisecond:
    0 → "0s", 0.02 → "20ms", 1.5 → "1.5s", 60 → "1m0s", 3725 → "1h2m5s"."""
    ms = max(0, round(seconds * 1000))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    whole, fraction = divmod(ms, 1000)
    secs = f"{whole}.{fraction:03d}".rstrip("0") if fraction else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
