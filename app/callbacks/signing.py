"""Standard Webhooks signatures (https://www.standardwebhooks.com), so receivers can verify callbacks
with any of the scheme's libraries.

The signed content is "{webhook-id}.{webhook-timestamp}.{body}"; the key is the base64 part of the
account's `whsec_…` secret. The id stays the same across retries so receivers can de-duplicate;
the timestamp is fresh on each attempt so a captured request cannot be replayed for long. While an
account's secret is being rotated, callbacks carry a signature by each of its two secrets.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's public prefix, not a secret


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_…` secret."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Secrets are sometimes stored without their base64 padding; extra padding is ignored.
        key = base64.b64decode(encoded + "==")
    except binascii.Error:
        raise ValueError("webhook secret is not valid base64") from None
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: `v1,<base64 HMAC-SHA256>`."""
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(secret: str, message_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for one delivery attempt of `body`."""
    return webhook_headers_signed_by([secret], message_id, body, now)


def webhook_headers_signed_by(
    secrets: Sequence[str], message_id: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """The headers with one signature per secret, space-separated (`v1,<a> v1,<b>`), as the scheme
    allows while a secret is being rotated: a receiver that knows either one verifies the message."""
    if not secrets:
        raise ValueError("at least one webhook secret is needed to sign")
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(secret, message_id, timestamp, body) for secret in secrets),
    }
