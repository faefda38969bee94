"""Channel secrets at rest: prove every one decrypts with GATEWAY_SECRET_KEY, and re-encrypt them
all under its newest key (see app/catalog/secrets.py)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from app.cli.output import Output
from app.cli.running import Stop, changing, reading
from app.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.catalog.secrets import SecretCipher
    from app.catalog.service import SecretProblem
    from app.cli.running import Subcommands


def add_commands(commands: Subcommands) -> None:
    secrets = commands.add_parser("secrets", help="channel secrets encrypted at rest").add_subparsers(title="secrets")
    p = secrets.add_parser(
        "check", help="exit 1 and list every secret that does not decrypt (or is plain text while a key is set)"
    )
    p.set_defaults(run=reading(cmd_secrets_check))
    p = secrets.add_parser("rotate", help="re-encrypt every secret with the newest key (plain text included)")
    p.set_defaults(run=changing(cmd_secrets_rotate))


def configured_cipher() -> SecretCipher:
    from app.catalog.secrets import SecretCipher

    return SecretCipher(Settings().secret_keys)


async def cmd_secrets_check(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.catalog.service import check_secrets

    cipher = configured_cipher()
    problems = _listed(await check_secrets(session, cipher))
    document = {"ok": not problems, "encrypted_at_rest": cipher.enabled, "problems": problems}
    return _verdict(document, problems)


async def cmd_secrets_rotate(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.catalog.service import rotate_secrets

    cipher = configured_cipher()
    if not cipher.enabled:
        raise Stop("error: GATEWAY_SECRET_KEY is not set: there is no key to encrypt with", status=2)
    problems = _listed(await rotate_secrets(session, cipher))
    # What did decrypt is committed under the newest key; keep the old keys until this is empty.
    return _verdict({"ok": not problems, "problems": problems}, problems)


def _verdict(document: dict[str, Any], problems: list[dict[str, str]]) -> Output:
    columns = ("channel", "channel_id", "field", "problem")
    if not problems:
        return Output(document, table=lambda: "every channel secret is in order")
    return Output(document, rows=problems, columns=columns, status=1)


def _listed(problems: list[SecretProblem]) -> list[dict[str, str]]:
    return [
        {"channel_id": p.channel_id, "channel": p.channel, "field": f"auth.{p.field}", "problem": p.problem}
        for p in problems
    ]
