"""When the gateway tries a webhook again: one schedule for everything it sends (task callbacks,
alerts), so an operator learns one rule.

Delays after each failed attempt are counted in units of GATEWAY_CALLBACK_RETRY_BASE_S (10 s by
default): 10 s, 1 min, 5 min, 30 min, 2 h, 6 h, 12 h. After the last one the webhook is given up.
"""

from __future__ import annotations

BACKOFF = (1, 6, 30, 180, 720, 2160, 4320)
# One attempt's deadline, DNS included.
DELIVERY_TIMEOUT_S = 15.0
# While one replica delivers, the row is pushed this far into the future so no other takes it:
# comfortably longer than an attempt, so a slow receiver never gets the same event twice at once.
CLAIM_S = 120.0


def retry_delay_s(failed_attempts: int, base_s: float) -> float | None:
    """Seconds to wait after `failed_attempts` failures (1 for the first); None = give up."""
    if failed_attempts > len(BACKOFF):
        return None
    return BACKOFF[failed_attempts - 1] * base_s
