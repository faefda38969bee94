"""Signed, expiring file URLs: `/v1/files/{id}?expires=…&sig=…`.

The signature is an HMAC-SHA256 of the file id and expiry under a key every replica shares (an
instance secret created at first start), so any replica can check a URL another one issued.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

# An expiry is a Unix time in ASCII digits. `str.isdigit()` also accepts "²" or Arabic-Indic digits,
# and int() refuses more than 4,300 digits: both would be a 500 on an unauthenticated route.
_EXPIRES = re.compile(r"[0-9]{1,12}")


class UrlSigner:
    def __init__(self, key: bytes, ttl_s: int) -> None:
        self._key = key
        self.ttl_s = ttl_s

    def _sig(self, file_id: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{file_id}.{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def url(self, base_url: str, file_id: str, *, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + self.ttl_s)
        return f"{base_url.rstrip('/')}/v1/files/{file_id}?expires={expires}&sig={self._sig(file_id, expires)}"

    def valid(self, file_id: str, expires: str | None, sig: str | None) -> bool:
        if not expires or not sig or _EXPIRES.fullmatch(expires) is None:
            return False
        if int(expires) < time.time():
            return False
        # As bytes: compare_digest raises on a str holding anything but ASCII.
        return hmac.compare_digest(self._sig(file_id, int(expires)).encode(), sig.encode())
