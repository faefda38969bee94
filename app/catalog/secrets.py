"""Channel secrets at rest: Fernet tokens under GATEWAY_SECRET_KEY, plain text without it.

`GATEWAY_SECRET_KEY` holds one or more Fernet keys, newest first. The newest encrypts; any of
them decrypts, so a new key is prepended, `image-gateway secrets rotate` re-encrypts every secret
with it, and then the old key can go. A stored value carries `fernet:` before its token: rows
written before a key was configured hold plain text, still load, and are encrypted on their next
write or by `secrets rotate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

SEALED_PREFIX = "fernet:"
# Keys of `Channel.auth` whose values are secrets: encrypted at rest, never read back by any API.
SECRET_AUTH_FIELDS = frozenset({"api_key"})


class UnreadableSecret(Exception):
    """A stored secret that cannot be used as it is. Carries the field's name, never its value."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"auth.{field}: {reason}")
        self.field = field
        self.reason = reason


class SecretCipher:
    """Seals secrets for storage and opens them again; without keys it stores plain text."""

    def __init__(self, keys: Sequence[str] = ()) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys]) if keys else None

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    @staticmethod
    def is_sealed(stored: str) -> bool:
        return stored.startswith(SEALED_PREFIX)

    def seal(self, value: str) -> str:
        """The form to store: a token under the newest key, or the value itself without keys.
        An already sealed value is kept as it is."""
        if self._fernet is None or self.is_sealed(value):
            return value
        return SEALED_PREFIX + self._fernet.encrypt(value.encode()).decode()

    def open(self, field: str, stored: str) -> str:
        if not self.is_sealed(stored):
            return stored
        if self._fernet is None:
            raise UnreadableSecret(field, "stored encrypted, but GATEWAY_SECRET_KEY is not set")
        try:
            return self._fernet.decrypt(stored.removeprefix(SEALED_PREFIX).encode()).decode()
        except InvalidToken:
            raise UnreadableSecret(field, "no key in GATEWAY_SECRET_KEY decrypts it") from None

    def reseal(self, field: str, stored: str) -> str:
        """The value re-encrypted under the newest key (plain text is encrypted)."""
        if self._fernet is None:
            raise UnreadableSecret(field, "GATEWAY_SECRET_KEY is not set")
        if not self.is_sealed(stored):
            return self.seal(stored)
        try:
            return SEALED_PREFIX + self._fernet.rotate(stored.removeprefix(SEALED_PREFIX).encode()).decode()
        except InvalidToken:
            raise UnreadableSecret(field, "no key in GATEWAY_SECRET_KEY decrypts it") from None

    def seal_auth(self, auth: Mapping[str, Any]) -> dict[str, Any]:
        return {name: self.seal(v) if _is_secret(name, v) else v for name, v in auth.items()}

    def open_auth(self, auth: Mapping[str, Any]) -> dict[str, Any]:
        """The auth with every secret in plain text; raises UnreadableSecret for the first one
        that cannot be decrypted."""
        return {name: self.open(name, v) if _is_secret(name, v) else v for name, v in auth.items()}

    def reseal_auth(self, auth: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """The auth with every secret re-encrypted under the newest key, and (field, reason) for
        each one that no key decrypts (left as it was)."""
        resealed = dict(auth)
        failed: list[tuple[str, str]] = []
        for name, value in auth.items():
            if not _is_secret(name, value):
                continue
            try:
                resealed[name] = self.reseal(name, value)
            except UnreadableSecret as unreadable:
                failed.append((name, unreadable.reason))
        return resealed, failed

    def problems(self, auth: Mapping[str, Any]) -> list[tuple[str, str]]:
        """What `secrets check` reports, as (field, reason): secrets no key decrypts and, with a
        key set, secrets still stored in plain text."""
        found: list[tuple[str, str]] = []
        for name, value in auth.items():
            if not _is_secret(name, value):
                continue
            if self.enabled and not self.is_sealed(value):
                found.append((name, "stored in plain text; run `image-gateway secrets rotate`"))
                continue
            try:
                self.open(name, value)
            except UnreadableSecret as unreadable:
                found.append((name, unreadable.reason))
        return found


def _is_secret(name: str, value: Any) -> bool:
    return name in SECRET_AUTH_FIELDS and isinstance(value, str) and bool(value)
