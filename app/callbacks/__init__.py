"""Task callbacks: an SSRF guard for caller-chosen URLs, Standard Webhooks signing, and delivery.

The SSRF guard lives in `app.net.ssrf` (image fetches share it). Submission calls
`check_without_dns` (syntax and literal addresses, no DNS); the task worker signs
the final task object with `webhook_headers` and sends it with `guarded_deliver`, which checks the
URL again, resolves it once and connects only to the address it checked.
"""

from app.callbacks.delivery import DeliveryOutcome, OutcomeKind, deliver, guarded_deliver
from app.callbacks.signing import sign, webhook_headers
from app.net.ssrf import (
    GuardedURL,
    HostUnresolvable,
    Networks,
    ResolvedURL,
    Resolver,
    URLRefused,
    check_without_dns,
    parse_guarded_url,
    resolve_guarded_url,
)

__all__ = [
    "DeliveryOutcome",
    "GuardedURL",
    "HostUnresolvable",
    "Networks",
    "OutcomeKind",
    "ResolvedURL",
    "Resolver",
    "URLRefused",
    "check_without_dns",
    "deliver",
    "guarded_deliver",
    "parse_guarded_url",
    "resolve_guarded_url",
    "sign",
    "webhook_headers",
]
