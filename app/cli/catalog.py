"""`models` and `channels`: what callers may ask for, and the upstreams that serve it. Each command
does what the matching admin route does, through the same services and schemas."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli import options
from app.cli.output import Output
from app.cli.running import changing, reading

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.cli.running import Subcommands

MODEL_COLUMNS = (
    "id", ("credits", "credits_per_image"), "multiplier", "aliases", ("max", "max_images"), ("sizes", "image_sizes"),
    "parameters", "enabled",
)  # fmt: skip
CHANNEL_COLUMNS = (
    "id", "name", "provider", "enabled", "priority", "weight", "multiplier", "models", "disabled_reason",
)  # fmt: skip
# The model fields, as options: (option, schema field, argparse type, help).
MODEL_OPTIONS: tuple[tuple[str, str, Any, str], ...] = (
    ("--credits-per-image", "credits_per_image", str, "price of one image, in credits"),
    ("--multiplier", "multiplier", str, "applied to the price (default 1)"),
    ("--aliases", "aliases", options.name_list, "other names for the model, a,b ('' for none)"),
    ("--max-images", "max_images", options.whole_number, "most images per request (1-10)"),
    ("--max-prompt-chars", "max_prompt_chars", options.whole_number, "longest prompt"),
    ("--aspect-ratios", "aspect_ratios", options.name_list, "e.g. 1:1,16:9"),
    ("--image-sizes", "image_sizes", options.name_list, "e.g. 1K,2K"),
    ("--parameters", "parameters", options.name_list, "optional parameters it takes, e.g. seed,negative_prompt"),
    ("--description", "description", str, "a line for people"),
    ("--enabled", "enabled", options.true_or_false, "true or false"),
    ("--options", "options", options.provider_options, "provider options, e.g. rendering_speed=TURBO ('{}': none)"),
)
CHANNEL_FIELDS = (
    "name", "provider", "base_url", "priority", "weight", "multiplier", "timeout_s", "max_concurrency", "models",
    "costs", "enabled", "retry_ambiguous",
)  # fmt: skip


def add_commands(commands: Subcommands) -> None:
    _add_models(
        commands.add_parser("models", help="the catalog: prices, aliases, capabilities").add_subparsers(title="models")
    )
    _add_channels(commands.add_parser("channels", help="upstream channels").add_subparsers(title="channels"))


def _add_models(models: Subcommands) -> None:
    models.add_parser("list", help="every model").set_defaults(run=reading(models_list))
    p = models.add_parser("show", help="one model")
    p.add_argument("model", help="the model's id or an alias")
    p.set_defaults(run=reading(models_show))
    p = models.add_parser(
        "set",
        help="create a model, or replace one whole (PUT): every field, from options and/or --file",
        description="A new model needs only --credits-per-image. Replacing an existing one needs every field "
        "(`models show ID --json > m.json`, edit, `models set ID --file m.json`); to change some fields, "
        "use `models update`.",
    )
    p.add_argument("id", help="the model's id (1-120 characters)")
    p.add_argument("--file", help="a JSON object as `models show --json` prints it ('-' reads stdin)")
    _model_options(p)
    p.set_defaults(run=changing(models_set))
    p = models.add_parser("update", help="change only the given fields of a model (PATCH)")
    p.add_argument("model", help="the model's id or an alias")
    _model_options(p)
    p.set_defaults(run=changing(models_update))


def _model_options(p: argparse.ArgumentParser) -> None:
    for option, field, parse, description in MODEL_OPTIONS:
        p.add_argument(option, dest=field, type=parse, default=argparse.SUPPRESS, help=description)


def _add_channels(channels: Subcommands) -> None:
    channels.add_parser("list", help="every channel, with its live health").set_defaults(run=reading(channels_list))
    p = channels.add_parser("show", help="one channel")
    p.add_argument("channel", help="the channel's id or name")
    p.set_defaults(run=reading(channels_show))
    p = channels.add_parser("add", help="add a channel")
    _channel_options(p, required=True)
    p.set_defaults(run=changing(channels_add))
    p = channels.add_parser("update", help="change only the given fields of a channel")
    p.add_argument("channel", help="the channel's id or name")
    _channel_options(p, required=False)
    p.set_defaults(run=changing(channels_update))
    for verb, enabled in (("enable", True), ("disable", False)):
        p = channels.add_parser(verb, help=f"{verb} routing to a channel")
        p.add_argument("channel", help="the channel's id or name")
        p.set_defaults(run=changing(channels_enable if enabled else channels_disable))
    p = channels.add_parser("delete", help="delete a channel (history keeps its name)")
    p.add_argument("channel", help="the channel's id or name")
    p.set_defaults(run=changing(channels_delete))
    p = channels.add_parser(
        "test",
        help="one real one-image generation through this channel alone (disabled ones too); exit 1 when it fails",
        description="Charged to no account; the provider bills it, and it is recorded as a test attempt.",
    )
    p.add_argument("channel", help="the channel's id or name")
    p.add_argument("--model", help="a catalog model (id or alias) the channel maps (default: the first it maps)")
    p.set_defaults(run=channels_test_command)


def _channel_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--name", required=required)
    p.add_argument("--provider", required=required, help="local, google-imagen, gemini-image, openai-images, …")
    p.add_argument("--base-url")
    p.add_argument("--api-key", help="secret, write-only; prefer --api-key-env ('none' removes it)")
    p.add_argument("--api-key-env", help="environment variable that holds the upstream key")
    p.add_argument("--service-account-file")
    p.add_argument("--auth-style", choices=["x-goog-api-key", "bearer", "query"])
    p.add_argument(
        "--models",
        type=options.model_mapping,
        metavar="CATALOG=UPSTREAM,…",
        help="e.g. imagen4=imagen-4.0-generate-001,imagen4-fast=imagen-4.0-fast-generate-001, or a JSON object",
    )
    p.add_argument(
        "--costs", type=options.cost_mapping, metavar="UPSTREAM=COST,…", help="provider's price per image returned"
    )
    p.add_argument("--priority", type=options.whole_number, help="higher is tried first")
    p.add_argument("--weight", type=options.whole_number, help="share of traffic within a priority")
    p.add_argument("--multiplier", help="applied to the model's price when this channel serves")
    p.add_argument("--timeout", type=float, dest="timeout_s", metavar="SECONDS")
    p.add_argument("--max-concurrency", type=options.whole_number_or_none, default=argparse.SUPPRESS, metavar="N")
    p.add_argument("--enabled", type=options.true_or_false, metavar="true|false")
    p.add_argument("--retry-ambiguous", type=options.true_or_false, metavar="true|false")


def channel_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The options given, as the admin API's channel body (validated by its schema)."""
    fields: dict[str, Any] = {
        name: getattr(args, name) for name in CHANNEL_FIELDS if getattr(args, name, None) is not None
    }
    if hasattr(args, "max_concurrency"):
        fields["max_concurrency"] = args.max_concurrency
    auth = {
        "api_key": options.text_or_none(args.api_key) if args.api_key is not None else None,
        "api_key_env": args.api_key_env,
        "service_account_file": args.service_account_file,
        "style": args.auth_style,
    }
    auth = {k: v for k, v in auth.items() if v is not None}
    if args.api_key is not None and options.text_or_none(args.api_key) is None:
        auth["api_key"] = None
    if auth:
        fields["auth"] = auth
    return fields


async def models_list(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.catalog_schemas import ModelOut
    from app.catalog import service

    documents = [ModelOut.of(row).model_dump(mode="json") for row in await service.list_models(session)]
    return Output(documents, columns=MODEL_COLUMNS, empty="(no models)")


async def models_show(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.catalog_schemas import ModelOut
    from app.cli import lookup

    return Output(ModelOut.of(await lookup.model(session, args.model)))


async def models_set(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.catalog_schemas import ModelIn, ModelOut
    from app.catalog import service
    from app.catalog.models import CatalogModel

    if not 1 <= len(args.id) <= 120:
        raise ValueError("the model id must be 1-120 characters")
    body = ModelIn.model_validate(_read_object(args.file) | _model_fields(args) if args.file else _model_fields(args))
    missing = body.missing()
    if missing and await session.get(CatalogModel, args.id) is not None:
        options_of = {field: option for option, field, _, _ in MODEL_OPTIONS}
        raise ValueError(
            f"`models set` replaces the whole model {args.id!r}; missing: {', '.join(options_of[m] for m in missing)}. "
            f"Give every field (`image-gateway models show {args.id} --json > m.json`, edit it, then "
            f"`models set {args.id} --file m.json`), or change only some with `models update {args.id} …`."
        )
    row, _ = await service.put_model(session, args.id, body.fields(), missing=missing)
    return Output(ModelOut.of(row))


async def models_update(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.catalog_schemas import ModelOut, ModelPatch
    from app.catalog import service

    fields = _model_fields(args)
    if not fields:
        raise ValueError("nothing to change: give at least one option (see `image-gateway models update --help`)")
    row = await service.patch_model(session, args.model, ModelPatch.model_validate(fields).changes())
    return Output(ModelOut.of(row))


def _model_fields(args: argparse.Namespace) -> dict[str, Any]:
    return {field: getattr(args, field) for _, field, _, _ in MODEL_OPTIONS if hasattr(args, field)}


def _read_object(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"--file: cannot read {path}: {exc.strerror}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--file: {path} is not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(document, dict):
        raise ValueError(f"--file: {path} must hold one JSON object, as `models show ID --json` prints it")
    return document


async def channels_list(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.catalog_schemas import ChannelOut
    from app.catalog import service

    # No live `health` here: it lives in the routing processes (their memory, or Redis); GET
    # /admin/channels shows it.
    documents = [ChannelOut.of(c).model_dump(mode="json") for c in await service.list_channels(session)]
    rows = [{**d, "models": ",".join(d["models"])} for d in documents]
    return Output(documents, columns=CHANNEL_COLUMNS, rows=rows, empty="(no channels)")


async def channels_show(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.catalog_schemas import ChannelOut
    from app.cli import lookup

    return Output(ChannelOut.of(await lookup.channel(session, args.channel)))


async def channels_add(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.catalog_schemas import ChannelCreate, ChannelOut
    from app.catalog import service
    from app.cli.secrets import configured_cipher

    fields = ChannelCreate.model_validate(channel_fields(args)).changes()
    fields.setdefault("auth", {})
    return Output(ChannelOut.of(await service.create_channel(session, configured_cipher(), fields)))


async def channels_update(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.catalog_schemas import ChannelFields

    given = channel_fields(args)
    if not given:
        raise ValueError("nothing to change: give at least one option (see `image-gateway channels update --help`)")
    return await _changed_channel(session, args.channel, ChannelFields.model_validate(given).changes())


async def channels_enable(session: AsyncSession, args: argparse.Namespace) -> Output:
    return await _changed_channel(session, args.channel, {"enabled": True})


async def channels_disable(session: AsyncSession, args: argparse.Namespace) -> Output:
    return await _changed_channel(session, args.channel, {"enabled": False})


async def _changed_channel(session: AsyncSession, ref: str, fields: dict[str, Any]) -> Output:
    from app.admin.catalog_schemas import ChannelOut
    from app.catalog import service
    from app.cli import lookup
    from app.cli.secrets import configured_cipher

    channel = await lookup.channel(session, ref)
    return Output(ChannelOut.of(await service.update_channel(session, configured_cipher(), channel.id, fields)))


async def channels_delete(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.catalog import service
    from app.cli import lookup

    channel = await lookup.channel(session, args.channel)
    await service.delete_channel(session, channel.id)
    return Output({"id": channel.id, "name": channel.name, "deleted": True})


def channels_test_command(args: argparse.Namespace) -> int:
    from app.cli.channel_test import run_channel_test

    return run_channel_test(args)
