"""Channel secrets at rest: encrypted under GATEWAY_SECRET_KEY, checked and rotated by the CLI,
on both databases. Raw rows are read with plain SQL, as someone holding a database dump would."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from app.db import Database
from app.settings import Settings
from tests.support.fakes.channels import Upstreams, ok
from tests.support.fakes.upstream import FakeUpstream
from tests.support.harness import Harness, running_app
from tests.support.processes import cli, gateway_env

# Fixed test keys (generated once with Fernet.generate_key()): xdist workers must collect the same ids.
KEY_A = "owEoVICxgpRdyQRAfFL5B6wDe7sVyLulU9QBGUIK31k="
KEY_B = "wQnvC_i6mRdhD3LsYmBaRWPpQ8n_9Umd4c_8_d2oX2M="


@asynccontextmanager
async def gateway_with(settings: Settings, secret_key: str | None) -> AsyncIterator[Harness]:
    async with running_app(settings.model_copy(update={"secret_key": secret_key})) as harness:
        yield harness


async def stored_auth(database_url: str, channel_id: str) -> str:
    """The channel's `auth` column exactly as the database holds it."""
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            raw = await session.scalar(
                text("SELECT CAST(auth AS TEXT) FROM channels WHERE id = :id"), {"id": channel_id}
            )
    finally:
        await db.dispose()
    assert isinstance(raw, str)
    return raw


async def disable_local(gw: Harness) -> None:
    """Every request then goes to the fake upstream's channels."""
    local = await gw.local_channel()
    await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})


async def add_fake_channel(gw: Harness, ups: Upstreams, name: str, secret: str, **fields: Any) -> dict[str, Any]:
    channel = await ups.channel(gw, name, ok, **fields)
    await gw.admin("PATCH", f"/admin/channels/{channel['id']}", json={"auth": {"api_key": secret}})
    return channel


async def key_seen_upstream(gw: Harness, upstream: FakeUpstream, name: str) -> str:
    """Generate one image and return the API key the channel `name` received for it."""
    _, key = await gw.account_with_key(credits=100)
    response = await gw.generate(key, {"prompt": "a lighthouse", "model": "imagen4"})
    assert response.status_code == 200, response.text
    received = [r for r in upstream.requests if r.path.startswith(f"/{name}/")]
    assert received, f"nothing reached channel {name}"
    return received[-1].headers["x-goog-api-key"]


def secrets_cli(database_url: str, tmp_path: Path, secret_key: str | None, *args: str) -> Any:
    extra = {"GATEWAY_SECRET_KEY": secret_key} if secret_key is not None else {}
    return cli(gateway_env(database_url, tmp_path / "data", **extra), "secrets", *args, check=False)


async def test_api_key_is_encrypted_at_rest_and_still_reaches_the_upstream(
    settings: Settings, database_url: str, upstream: FakeUpstream
) -> None:
    secret = "sk-live-at-rest-0123456789abcdef"
    async with gateway_with(settings, KEY_A) as gw:
        await disable_local(gw)
        ups = Upstreams(upstream)
        created = await gw.add_channel(
            name="vault",
            provider="google-imagen",
            base_url=f"{upstream.url}/vault/v1beta",
            auth={"api_key": secret, "style": "x-goog-api-key"},
            models={"imagen4": "imagen-4.0-generate-001"},
        )
        ups.behaviour["vault"] = ok
        raw = await stored_auth(database_url, created["id"])
        assert secret not in raw
        assert "fernet:" in raw
        assert await key_seen_upstream(gw, upstream, "vault") == secret
        listed = (await gw.admin("GET", "/admin/channels")).text
        assert secret not in listed and "fernet:" not in listed
        assert (await gw.admin("GET", f"/admin/channels/{created['id']}")).json()["auth"]["api_key_set"] is True


async def test_a_plaintext_row_is_encrypted_on_its_next_write(
    settings: Settings, database_url: str, upstream: FakeUpstream
) -> None:
    ups = Upstreams(upstream)
    async with gateway_with(settings, None) as gw:
        channel = await add_fake_channel(gw, ups, "legacy", "sk-written-before-the-key")
    assert "sk-written-before-the-key" in await stored_auth(database_url, channel["id"])
    async with gateway_with(settings, KEY_A) as gw:
        # A plaintext row from before the key still loads...
        await disable_local(gw)
        assert await key_seen_upstream(gw, upstream, "legacy") == "sk-written-before-the-key"
        # ...and any write to the channel encrypts it.
        await gw.admin("PATCH", f"/admin/channels/{channel['id']}", json={"weight": 2})
        assert "sk-written-before-the-key" not in await stored_auth(database_url, channel["id"])
        gw.gateway.invalidate_caches()
        assert await key_seen_upstream(gw, upstream, "legacy") == "sk-written-before-the-key"


@pytest.mark.slow
@pytest.mark.parametrize("configured", ["wrong key", "no key"])
async def test_an_undecryptable_channel_is_named_by_check_and_the_others_keep_serving(
    settings: Settings,
    database_url: str,
    upstream: FakeUpstream,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    configured: str,
) -> None:
    ups = Upstreams(upstream)
    async with gateway_with(settings, KEY_A) as gw:
        lost = await add_fake_channel(gw, ups, "lost", "sk-sealed-with-a-lost-key", priority=10)
    check = secrets_cli(database_url, tmp_path, KEY_A, "check")
    assert check.returncode == 0, check.stdout + check.stderr

    now_key = KEY_B if configured == "wrong key" else None
    caplog.set_level(logging.INFO)
    async with gateway_with(settings, now_key) as gw:
        await disable_local(gw)
        await add_fake_channel(gw, ups, "fresh", "sk-fresh-channel-key")
        assert await key_seen_upstream(gw, upstream, "fresh") == "sk-fresh-channel-key"
        assert not any(r.path.startswith("/lost/") for r in upstream.requests)
        assert (await gw.admin("GET", "/admin/channels")).status_code == 200
    assert "lost" in caplog.text and lost["id"] in caplog.text
    assert "sk-sealed-with-a-lost-key" not in caplog.text

    check = secrets_cli(database_url, tmp_path, now_key, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert lost["id"] in check.stdout and '"lost"' in check.stdout and "api_key" in check.stdout
    assert "fresh" not in check.stdout
    assert "sk-sealed-with-a-lost-key" not in check.stdout + check.stderr


@pytest.mark.slow
async def test_rotation_to_a_new_key_keeps_every_channel_working(
    settings: Settings, database_url: str, upstream: FakeUpstream, tmp_path: Path
) -> None:
    ups = Upstreams(upstream)
    async with gateway_with(settings, KEY_A) as gw:
        channel = await add_fake_channel(gw, ups, "rotated", "sk-survives-rotation")
    sealed_with_a = await stored_auth(database_url, channel["id"])

    both = f"{KEY_B},{KEY_A}"  # the new key first: it encrypts, either decrypts
    rotate = secrets_cli(database_url, tmp_path, both, "rotate")
    assert rotate.returncode == 0, rotate.stdout + rotate.stderr
    assert "sk-survives-rotation" not in rotate.stdout + rotate.stderr
    sealed_with_b = await stored_auth(database_url, channel["id"])
    assert sealed_with_b != sealed_with_a and "sk-survives-rotation" not in sealed_with_b

    # The old key is dropped: everything still decrypts with the new one alone.
    check = secrets_cli(database_url, tmp_path, KEY_B, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert secrets_cli(database_url, tmp_path, KEY_A, "check").returncode == 1
    async with gateway_with(settings, KEY_B) as gw:
        await disable_local(gw)
        assert await key_seen_upstream(gw, upstream, "rotated") == "sk-survives-rotation"


@pytest.mark.slow
async def test_rotate_encrypts_a_plaintext_row_from_before_the_key(
    settings: Settings, database_url: str, upstream: FakeUpstream, tmp_path: Path
) -> None:
    ups = Upstreams(upstream)
    async with gateway_with(settings, None) as gw:
        channel = await add_fake_channel(gw, ups, "plain", "sk-stored-in-the-clear")
    assert "sk-stored-in-the-clear" in await stored_auth(database_url, channel["id"])

    check = secrets_cli(database_url, tmp_path, KEY_A, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert channel["id"] in check.stdout and "plain text" in check.stdout
    assert "sk-stored-in-the-clear" not in check.stdout

    rotate = secrets_cli(database_url, tmp_path, KEY_A, "rotate")
    assert rotate.returncode == 0, rotate.stdout + rotate.stderr
    assert "sk-stored-in-the-clear" not in await stored_auth(database_url, channel["id"])
    assert secrets_cli(database_url, tmp_path, KEY_A, "check").returncode == 0
    async with gateway_with(settings, KEY_A) as gw:
        await disable_local(gw)
        assert await key_seen_upstream(gw, upstream, "plain") == "sk-stored-in-the-clear"


@pytest.mark.slow
async def test_rotate_without_a_key_refuses(database_url: str, tmp_path: Path) -> None:
    rotate = secrets_cli(database_url, tmp_path, None, "rotate")
    assert rotate.returncode != 0
    assert "GATEWAY_SECRET_KEY" in rotate.stderr


@pytest.mark.parametrize("value", ["not-a-fernet-key", f"{KEY_A},short", f"{KEY_A},,{KEY_B}"])
def test_a_malformed_secret_key_is_refused_at_start(value: str) -> None:
    with pytest.raises(ValidationError, match="GATEWAY_SECRET_KEY"):
        Settings(secret_key=value, _env_file=None)


def test_well_formed_secret_keys_are_accepted() -> None:
    settings = Settings(secret_key=f" {KEY_B} , {KEY_A} ", _env_file=None)
    assert settings.secret_keys == [KEY_B, KEY_A]
    assert Settings(secret_key="", _env_file=None).secret_keys == []


async def test_a_secret_that_looks_encrypted_is_refused(gw: Harness) -> None:
    response = await gw.admin(
        "POST", "/admin/channels", json={"name": "x", "provider": "google-imagen", "auth": {"api_key": "fernet:abc"}}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "auth.api_key"


def test_a_refused_secret_key_is_not_echoed() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(secret_key=f"{KEY_A},{KEY_B[:-4]}", _env_file=None)
    assert "key #2" in str(refused.value)
    assert KEY_A not in str(refused.value) and KEY_B[:-4] not in str(refused.value)
    assert KEY_A not in repr(Settings(secret_key=KEY_A, _env_file=None))
