"""The gateway's configuration as a YAML file under review: its format, and reading it.

A file lists `models`, `channels` and `operators` (docs/config.md). Each entry is validated by the
schema the admin API uses for the same object (app/admin/catalog_schemas.py), so a file cannot
hold what `PATCH`/`PUT` would refuse; on top of that, secrets stay out of it: a channel names the
environment variable or the service-account file that holds its key, never the key itself.

Reading collects every problem of the file, each naming the file, the entry and the field
(`gateway.yaml: channels[1] (google-a).auth.api_key: …`), before anything is applied.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.admin.catalog_schemas import ChannelAuth, ChannelFields, ModelPatch
from app.admin.types import Text
from app.catalog.secrets import SECRET_AUTH_FIELDS
from app.errors import InvalidRequest
from app.operators.roles import Role

SECTIONS = ("models", "channels", "operators")


class ConfigError(InvalidRequest):
    """A config file that is not applied: every problem found, one per line. Nothing was changed."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.problems = [f"{source}: {problem}" for problem in problems]
        super().__init__(
            f"config file {source} not applied (nothing was changed):\n" + "\n".join(f"  {p}" for p in self.problems)
        )


class ModelEntry(ModelPatch):
    """A model as `PATCH /admin/models/{id}` takes it, plus its id. A new model needs
    `credits_per_image`; an existing one keeps every field the entry leaves out."""

    READ_ONLY: ClassVar[frozenset[str]] = frozenset({"object", "updated_at"})
    id: Text = Field(min_length=1, max_length=120)


class AuthEntry(ChannelAuth):
    """A channel's `auth` without secrets: `api_key_env` or `service_account_file` name where the
    key is. `api_key: null` removes a key stored in the database."""

    @field_validator(*SECRET_AUTH_FIELDS, check_fields=False)
    @classmethod
    def _no_literal_secret(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError(
                "a literal key is refused in a config file (it would sit in version control); put it in "
                "an environment variable of the gateway and name that with api_key_env"
            )
        return value


class ChannelEntry(ChannelFields):
    """A channel as `PATCH /admin/channels/{id}` takes it, matched by `id` when given (which
    renames it), else by `name`. A new channel needs `provider`."""

    READ_ONLY: ClassVar[frozenset[str]] = ChannelFields.READ_ONLY - {"id"}
    id: Text | None = Field(None, min_length=1, max_length=40)
    name: Text = Field(min_length=1, max_length=200)
    auth: AuthEntry | None = None

    def changes(self) -> dict[str, Any]:
        fields = super().changes()
        fields.pop("id", None)
        return fields


class OperatorEntry(BaseModel):
    """A named operator, matched by name. Its token is never in the file: a new operator's token
    is printed once by `image-gateway config apply`."""

    model_config = ConfigDict(extra="forbid")
    name: Text = Field(min_length=1, max_length=200)
    role: Role


class GatewayConfig(BaseModel):
    """A section left out of the file is left alone, even by `--prune`; an empty list is not."""

    model_config = ConfigDict(extra="forbid")
    models: list[ModelEntry] | None = None
    channels: list[ChannelEntry] | None = None
    operators: list[OperatorEntry] | None = None


def load_config(path: Path) -> GatewayConfig:
    """The file, validated whole; ConfigError lists every problem in it."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [f"cannot read it: {exc}"]) from None
    return parse_config(text, source)


def parse_config(text: str, source: str) -> GatewayConfig:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader, see _Loader
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {_yaml_problem(exc)}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [f"must be a mapping with the sections {', '.join(SECTIONS)}"])
    problems = [
        f"{key}: unknown section; the sections are {', '.join(SECTIONS)}" for key in data if key not in SECTIONS
    ]
    sections = {key: data[key] for key in SECTIONS if data.get(key) is not None}
    for key, value in list(sections.items()):
        if not isinstance(value, list):
            problems.append(f"{key}: must be a list of entries")
            del sections[key]
    config = GatewayConfig()
    try:
        config = GatewayConfig.model_validate(sections)
    except ValidationError as exc:
        problems += [_describe(error, sections) for error in exc.errors()]
    if problems:
        raise ConfigError(source, problems)
    duplicates = _duplicates(config)
    if duplicates:
        raise ConfigError(source, duplicates)
    return config


def entry_label(section: str, index: int, name: str | None) -> str:
    """How a problem names an entry: `channels[1] (google-a)`."""
    return f"{section}[{index}]" + (f" ({name})" if name else "")


def _describe(error: Any, data: dict[str, Any]) -> str:
    loc = list(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "missing":
        message = "required"
    if len(loc) < 2 or not isinstance(loc[1], int):
        return f"{'.'.join(map(str, loc)) or '(file)'}: {message}"
    section, index, rest = str(loc[0]), loc[1], loc[2:]
    entry = data[section][index]
    name = None
    if isinstance(entry, dict):
        name = entry.get("id" if section == "models" else "name") or entry.get("id")
    where = entry_label(section, index, str(name) if name is not None else None)
    return f"{where}{''.join(f'.{part}' for part in rest)}: {message}"


def _duplicates(config: GatewayConfig) -> list[str]:
    problems: list[str] = []
    for section, keys in (
        ("models", [("id", m.id) for m in config.models or []]),
        ("channels", [("name", c.name) for c in config.channels or []]),
        ("channels", [("id", c.id) for c in config.channels or [] if c.id]),
        ("operators", [("name", o.name) for o in config.operators or []]),
    ):
        seen: dict[str, int] = {}
        for index, (field, value) in enumerate(keys):
            if value in seen:
                problems.append(f"{section}[{index}] ({value}).{field}: also used by {section}[{seen[value]}]")
            seen.setdefault(value, index)
    return problems


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else str(problem)


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """YAML 1.1 without its base-60 numbers: `16:9` is the aspect ratio, not the integer 969."""


_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT, re.compile(r"^[-+]?(?:[0-9][0-9_]*)?\.[0-9_]+(?:[eE][-+]?[0-9]+)?$"), list("-+0123456789.")
)
