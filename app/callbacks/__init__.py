"""Task callbacks: an SSRF guard for caller-chosen URLs, Standard Webhooks signing, and delivery.

Submission calls `check_submission` (syntax and literal addresses, no DNS); the task worker signs
the final task object with `webhook_headers` and sends it with `guarded_deliver`, which checks the
URL again, resolves it once and connects only to the address it checked.
"""

from app.callbacks.delivery import DeliveryOutcome, OutcomeKind, deliver, guarded_deliver
from app.callbacks.signing import sign, webhook_headers
from app.callbacks.ssrf import (
    CallbackRefused,
    CallbackUnresolvable,
    CallbackURL,
    Networks,
    ResolvedCallback,
    Resolver,
    check_submission,
    parse_callback_url,
    resolve_callback,
)

__all__ = [
    "CallbackRefused",
    "CallbackURL",
    "CallbackUnresolvable",
    "DeliveryOutcome",
    "Networks",
    "OutcomeKind",
    "ResolvedCallback",
    "Resolver",
    "check_submission",
    "deliver",
    "guarded_deliver",
    "parse_callback_url",
    "resolve_callback",
    "sign",
    "webhook_headers",
]
