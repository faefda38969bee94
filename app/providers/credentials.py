"""How a channel's credentials travel: API key by header, Bearer or query, or Google OAuth tokens
minted from a service account (cached, refreshed before expiry, off the event loop)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING

from app.providers.errors import UpstreamError, UpstreamRejected, UpstreamRetryable
from app.specs import ChannelSpec

if TYPE_CHECKING:
    from google.oauth2 import service_account

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
REFRESH_MARGIN_S = 300  # refresh a token five minutes before it expires


@dataclass
class RequestAuth:
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


def channel_api_key(channel: ChannelSpec) -> str | None:
    key = channel.auth.get("api_key")
    if isinstance(key, str) and key:
        return key
    env_name = channel.auth.get("api_key_env")
    if isinstance(env_name, str) and env_name:
        value = os.environ.get(env_name)
        if not value:
            raise UpstreamRejected(f"channel {channel.name}: environment variable {env_name} is not set")
        return value
    return None


def key_auth(channel: ChannelSpec, default_style: str) -> RequestAuth:
    """An API key placed as the channel's `auth.style` says (or the adapter's default)."""
    key = channel_api_key(channel)
    if key is None:
        return RequestAuth()
    style = channel.auth.get("style") or default_style
    if style == "bearer":
        return RequestAuth(headers={"authorization": f"Bearer {key}"})
    if style == "query":
        return RequestAuth(params={"key": key})
    return RequestAuth(headers={"x-goog-api-key": key})


class GoogleTokenSource:
    """OAuth access tokens for service-account channels, one cached credential per key file.

    google-auth's refresh is blocking (an HTTP call to the file's `token_uri`), so it runs in a
    thread; a lock per file keeps concurrent requests from refreshing the same token at once.
    """

    def __init__(self) -> None:
        self._credentials: dict[str, service_account.Credentials] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def token(self, service_account_file: str) -> str:
        credentials = self._credentials.get(service_account_file)
        if credentials is not None and _fresh(credentials):
            return str(credentials.token)
        lock = self._locks.setdefault(service_account_file, asyncio.Lock())
        async with lock:
            credentials = self._credentials.get(service_account_file)
            if credentials is None:
                credentials = await asyncio.to_thread(_load, service_account_file)
                self._credentials[service_account_file] = credentials
            if not _fresh(credentials):
                await asyncio.to_thread(_refresh, credentials)
            return str(credentials.token)


def _fresh(credentials: service_account.Credentials) -> bool:
    if not credentials.token or credentials.expiry is None:
        return False
    # google-auth keeps expiry as a naive UTC datetime.
    expiry = credentials.expiry.replace(tzinfo=UTC).timestamp()
    return bool(expiry - time.time() > REFRESH_MARGIN_S)


# google-auth (with requests and urllib3, ~25 MB per process) is imported by the thread that first
# needs a token: most deployments have no service-account channel at all.
def _load(path: str) -> service_account.Credentials:
    from google.oauth2 import service_account

    try:
        credentials: service_account.Credentials = service_account.Credentials.from_service_account_file(
            path, scopes=[CLOUD_PLATFORM_SCOPE]
        )
    except (OSError, ValueError) as exc:
        raise UpstreamRejected(f"cannot read the channel's service account file ({type(exc).__name__})") from None
    return credentials


def _refresh(credentials: service_account.Credentials) -> None:
    from google.auth.exceptions import RefreshError, TransportError
    from google.auth.transport.requests import Request as GoogleAuthRequest

    try:
        credentials.refresh(GoogleAuthRequest())
    except RefreshError:
        raise UpstreamRejected("Google refused the channel's service account") from None
    except TransportError:
        raise UpstreamRetryable("could not reach Google's token endpoint") from None


REDACTED = "[redacted]"
MIN_SECRET_FRAGMENT = 8  # a shorter cut-off tail is too likely to be ordinary text


def redact_text(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret cut out, including a secret's start left at the very end by an
    upstream that truncated its message mid-key."""
    for secret in secrets:
        if not secret or len(secret) < 4:
            continue
        text = text.replace(secret, REDACTED)
        for length in range(len(secret) - 1, MIN_SECRET_FRAGMENT - 1, -1):
            if text.endswith(secret[:length]):
                text = text[:-length] + REDACTED
                break
    return text


def redact_error(error: UpstreamError, secrets: Iterable[str | None]) -> UpstreamError:
    """The same error with its message redacted: upstream error texts reach callers and logs,
    and an upstream or relay may quote the credentials it was given."""
    message = redact_text(error.message, secrets)
    if message != error.message:
        error.message = message
        error.args = (message,)
    return error


def configured_secrets(channel: ChannelSpec) -> list[str | None]:
    env_name = channel.auth.get("api_key_env")
    from_env = os.environ.get(env_name) if isinstance(env_name, str) and env_name else None
    api_key = channel.auth.get("api_key")
    return [api_key if isinstance(api_key, str) else None, from_env]


async def known_secrets(channels: Iterable[ChannelSpec]) -> set[str]:
    """Every credential the channels hold, enabled or not, for log redaction: stored keys, keys
    named by environment variable, and the private-key material of service-account files."""
    found: set[str] = set()
    key_files: set[str] = set()
    for channel in channels:
        found.update(secret for secret in configured_secrets(channel) if secret)
        key_file = channel.auth.get("service_account_file")
        if isinstance(key_file, str) and key_file:
            key_files.add(key_file)
    if key_files:  # file reads stay off the event loop
        found.update(await asyncio.to_thread(_service_account_secrets, sorted(key_files)))
    return found


def _service_account_secrets(paths: list[str]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        try:
            with open(path, encoding="utf-8") as file:
                info = json.load(file)
        except (OSError, ValueError):
            continue  # routing reports an unreadable file when the channel is used
        if not isinstance(info, dict):
            continue
        key_id, private_key = info.get("private_key_id"), info.get("private_key")
        if isinstance(key_id, str):
            found.add(key_id)
        if isinstance(private_key, str):
            # Line by line: a traceback or a JSON dump shows the key with its newlines escaped.
            lines = (line.strip() for line in private_key.splitlines())
            found.update(line for line in lines if len(line) >= 16 and not line.startswith("-----"))
    return found


def scrub_secrets(text: str, channel: ChannelSpec) -> str:
    """Last line of defence in routing: no configured credential of the channel survives in a
    message that is passed on or stored, whatever the adapter did."""
    return redact_text(text, configured_secrets(channel))


async def google_auth(
    channel: ChannelSpec, tokens: GoogleTokenSource, default_style: str
) -> tuple[RequestAuth, tuple[str, ...]]:
    """How a Google adapter's call authenticates, and every secret involved (configured key or
    minted OAuth token) so that the adapter can redact them from upstream errors."""
    key_file = channel.auth.get("service_account_file")
    if isinstance(key_file, str) and key_file:
        token = await tokens.token(key_file)
        return RequestAuth(headers={"authorization": f"Bearer {token}"}), (token,)
    key = channel_api_key(channel)
    return key_auth(channel, default_style), (key,) if key else ()
