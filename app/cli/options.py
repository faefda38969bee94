"""Option values checked as the command line is read: a mistake is a usage error naming the option
and showing the form it takes (exit 2), before any database work. What only the admin API's schema
can check (bounds, dates, known providers) is checked by that schema, and reported by option too
(`validation_message`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any

NONE_WORDS = frozenset({"none", "null"})
# Schema fields whose option is not simply `--field-name`.
OPTION_OF_FIELD = {"timeout_s": "--timeout", "account_id": "--account"}


def model_list(text: str) -> list[str]:
    """`imagen4,imagen4-fast`: the catalog models a key may use."""
    models = [part.strip() for part in text.split(",") if part.strip()]
    if not models:
        raise argparse.ArgumentTypeError("give model ids separated by commas, e.g. --models imagen4,imagen4-fast")
    return models


def name_list(text: str) -> list[str]:
    """`a,b,c` as a list; an empty value is the empty list."""
    return [part.strip() for part in text.split(",") if part.strip()]


def model_mapping(text: str) -> dict[str, str]:
    """A channel's models: `imagen4=imagen-4.0-generate-001,imagen4-fast=…` or a JSON object."""
    return _pairs(
        text,
        "must be CATALOG_MODEL=UPSTREAM_MODEL pairs separated by commas, e.g. "
        "--models imagen4=imagen-4.0-generate-001,imagen4-fast=imagen-4.0-fast-generate-001 "
        '("*=MODEL" serves every catalog model), or a JSON object, e.g. '
        '\'{"imagen4": "imagen-4.0-generate-001"}\'',
    )


def cost_mapping(text: str) -> dict[str, str]:
    """A channel's costs: `imagen-4.0-generate-001=0.04,…` or a JSON object; `{}` removes them all."""
    return _pairs(
        text,
        "must be UPSTREAM_MODEL=COST_PER_IMAGE pairs separated by commas, e.g. "
        "--costs imagen-4.0-generate-001=0.04,imagen-4.0-fast-generate-001=0.02, or a JSON object "
        "('{}' removes every cost)",
    )


def provider_options(text: str) -> dict[str, str]:
    """A model's provider options: `rendering_speed=TURBO` or a JSON object; `{}` removes them all."""
    return _pairs(
        text,
        "must be NAME=VALUE pairs separated by commas, e.g. --options rendering_speed=TURBO, or a JSON "
        "object ('{}' removes every option)",
    )


def _pairs(text: str, form: str) -> dict[str, str]:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"{form}; that JSON is not valid ({exc.msg}): {text!r}") from None
        if not all(isinstance(v, (str, int, float)) for v in parsed.values()):
            raise argparse.ArgumentTypeError(f"{form}; the values must be strings: {text!r}")
        return {str(k): str(v) for k, v in parsed.items()}
    pairs: dict[str, str] = {}
    for part in (p.strip() for p in stripped.split(",")):
        name, equals, value = part.partition("=")
        if not equals or not name.strip() or not value.strip():
            raise argparse.ArgumentTypeError(f"{form}; got {text!r}")
        pairs[name.strip()] = value.strip()
    return pairs


def budget(text: str) -> dict[str, str]:
    """`5000/month` as the admin API's budget object (its schema checks the numbers and period)."""
    credits, slash, period = text.partition("/")
    if not slash or not credits.strip() or not period.strip():
        raise argparse.ArgumentTypeError(
            f"must be CREDITS/PERIOD with PERIOD day, week or month, e.g. --budget 5000/month (got {text!r})"
        )
    return {"credits": credits.strip(), "period": period.strip()}


def whole_number_or_none(text: str) -> int | None:
    """An integer, or `none` to remove a limit."""
    if text.strip().lower() in NONE_WORDS:
        return None
    return whole_number(text)


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None


def text_or_none(text: str) -> str | None:
    return None if text.strip().lower() in NONE_WORDS else text


def true_or_false(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"must be true or false (got {text!r})")


def validation_message(errors: Sequence[Mapping[str, Any]]) -> str:
    """A pydantic error list as one clause per field, named by its option too:
    `rpm (--rpm): Input should be greater than or equal to 1`."""
    lines = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        field = ".".join(location)
        option = None
        if location:
            option = OPTION_OF_FIELD.get(location[0], "--" + location[0].replace("_", "-"))
        message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
        lines.append(f"{field} ({option}): {message}" if option else message)
    return "; ".join(lines)
