"""The gateway's current models, channels and operators as a config file (`image-gateway config
export`), in the form `config apply` reads: applying the export to the same database changes
nothing.

Secrets never leave the database: a channel keeps `api_key_env` / `service_account_file`, and a
key stored in the database is left out with a comment saying so. Revoked operators are left out.
"""

from __future__ import annotations

from typing import Any

import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.catalog_schemas import ChannelFields, ChannelOut, ModelIn, ModelOut
from app.catalog import service as catalog
from app.catalog.secrets import SECRET_AUTH_FIELDS
from app.operators import service as operators

HEADER = """\
# Image Gateway configuration (docs/config.md). Apply with: image-gateway config apply FILE [--prune]
# Entries match by model id, channel name and operator name; fields left out keep their values.
"""
STORED_SECRET = "# {field} set in the database; move it to api_key_env"  # noqa: S105 - a comment, not a secret
AUTO_DISABLED = "# disabled by the gateway: {reason}"


async def export_config(session: AsyncSession) -> str:
    models = [_model_entry(ModelOut.of(row).model_dump(mode="json")) for row in await catalog.list_models(session)]
    channels = [_channel_text(row) for row in await catalog.list_channels(session)]
    people = [{"name": o.name, "role": o.role} for o in await operators.list_operators(session)]
    parts = [HEADER]
    parts.append("models:\n" + "".join(_dump(entry) for entry in models) if models else "models: []\n")
    parts.append("channels:\n" + "".join(channels) if channels else "channels: []\n")
    parts.append("operators:\n" + "".join(_dump(entry) for entry in people) if people else "operators: []\n")
    return "\n".join(parts)


def _model_entry(shown: dict[str, Any]) -> dict[str, Any]:
    return {"id": shown["id"], **{name: shown[name] for name in ModelIn.model_fields if name in shown}}


def _channel_text(row: Any) -> str:
    shown = ChannelOut.of(row).model_dump(mode="json")
    entry = {name: shown[name] for name in ChannelFields.model_fields if name in shown}
    entry["auth"] = {k: v for k, v in entry.get("auth", {}).items() if k != "api_key_set"}
    text = _dump(entry)
    stored = sorted(name for name in SECRET_AUTH_FIELDS if (row.auth or {}).get(name))
    for name in stored:
        text = _comment_before(text, "auth", STORED_SECRET.format(field=name))
    if not row.enabled and getattr(row, "disabled_reason", None):
        text = _comment_before(text, "enabled", AUTO_DISABLED.format(reason=" ".join(row.disabled_reason.split())))
    return text


def _dump(entry: dict[str, Any]) -> str:
    # Flow style for the lists and maps inside an entry keeps it short (`aliases: [imagen-4.0-…]`),
    # the entry itself stays one field a line; strings YAML would read as something else ('8',
    # '16:9') come out quoted.
    lines = [
        f"{name}: " + yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1000)
        if isinstance(value, list | dict)
        else yaml.safe_dump({name: value}, allow_unicode=True, width=1000)
        for name, value in entry.items()
    ]
    first, *rest = "".join(lines).splitlines()
    # Every line of the entry (a long or multi-line string's too) indented under its "- ".
    return f"- {first}\n" + "".join(f"  {line}\n" for line in rest)


def _comment_before(text: str, key: str, comment: str) -> str:
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.startswith((f"  {key}:", f"- {key}:")):
            lines.insert(index, f"  {comment}\n")
            break
    return "".join(lines)
