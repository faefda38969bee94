"""Upstream error texts are passed on; credentials must never be in them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.providers.credentials import REDACTED, redact_error, redact_text, scrub_secrets
from app.providers.errors import UpstreamRejected
from app.specs import ChannelSpec

KEY = "sk-canary-0123456789abcdefghij"


def test_whole_and_cut_off_keys_are_removed() -> None:
    assert redact_text(f"refused ({KEY}) twice: {KEY}", [KEY]) == f"refused ({REDACTED}) twice: {REDACTED}"
    # An upstream that truncates its message mid-key leaves the key's start at the very end.
    assert redact_text(f"bad key {KEY[:14]}", [KEY]) == f"bad key {REDACTED}"
    assert redact_text("bad key sk-", [KEY]) == "bad key sk-"  # too short to be the key


def test_a_minted_token_quoted_in_an_error_is_cut_out() -> None:
    error = redact_error(
        UpstreamRejected("token ya29.minted-token is expired (401)", status=401), ["ya29.minted-token"]
    )
    assert (error.message, str(error)) == (f"token {REDACTED} is expired (401)",) * 2


def test_channel_key_from_the_environment_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IGW_TEST_CANARY_KEY", KEY)
    channel = ChannelSpec(
        id="ch",
        name="c",
        provider="openai-images",
        base_url="http://x",
        auth={"api_key_env": "IGW_TEST_CANARY_KEY"},
        models={},
        priority=0,
        weight=1,
        multiplier=Decimal(1),
        enabled=True,
        timeout_s=1.0,
        max_concurrency=None,
    )
    assert KEY not in scrub_secrets(f"echo {KEY}", channel)
