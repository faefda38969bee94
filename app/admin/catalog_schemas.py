"""Admin bodies for models and channels. Channel secrets are write-only."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from app.admin.types import MAX_CONCURRENCY, Credits, Multiplier, Text
from app.billing.amounts import parse_amount, render
from app.catalog.models import CatalogModel, Channel
from app.catalog.secrets import SECRET_AUTH_FIELDS
from app.images import ASPECT_RATIOS, DEFAULT_IMAGE_SIZE, IMAGE_SIZES, OPTIONAL_PARAMETERS, PROVIDER_OPTIONS
from app.providers.registry import PROVIDER_NAMES


class _AcceptsWhatGetReturns(BaseModel):
    """PUT/PATCH accept an object as GET returns it: read-only fields are dropped, not refused;
    any other unknown field is a 400 that names it."""

    model_config = ConfigDict(extra="forbid")
    READ_ONLY: ClassVar[frozenset[str]] = frozenset({"id", "object", "created_at", "updated_at", "health"})

    @model_validator(mode="before")
    @classmethod
    def _drop_read_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in cls.READ_ONLY}
        return data


# Prices are bounded so that the largest charge (credits_per_image × model multiplier × channel
# multiplier × max_images) stays far inside the amounts an account can hold: an absurd price is a
# 400 here, not an overflow on every caller request.
MAX_CREDITS_PER_IMAGE = 1_000_000
MAX_MULTIPLIER = 1000


# What one image costs upstream: non-negative, at most four places (upstream_cost is stored like
# credits), bounded so that cost × images stays far inside the column.
MAX_COST_PER_IMAGE = 1_000_000


def _cost(value: object) -> Decimal:
    parsed = parse_amount(value, field="cost")
    if not 0 <= parsed <= MAX_COST_PER_IMAGE:
        raise ValueError(f"cost must be between 0 and {MAX_COST_PER_IMAGE}")
    return parsed


Cost = Annotated[Decimal, BeforeValidator(_cost), PlainSerializer(render, return_type=str)]
UpstreamModel = Annotated[Text, Field(min_length=1, max_length=200)]


def _ratios(value: list[str]) -> list[str]:
    return _subset(value, ASPECT_RATIOS)


def _sizes(value: list[str]) -> list[str]:
    return _subset(value, IMAGE_SIZES)


def _parameters(value: list[str]) -> list[str]:
    return _subset(value, OPTIONAL_PARAMETERS)


def _provider_options(value: dict[str, str]) -> dict[str, str]:
    for name, option in value.items():
        allowed = PROVIDER_OPTIONS.get(name)
        if allowed is None:
            raise ValueError(f"unknown option {name!r}; known: {', '.join(PROVIDER_OPTIONS)}")
        if option not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {option!r}")
    return value


def _shown_options(value: Any) -> dict[str, str]:
    # As stored: a row written some other way than this API still renders (the snapshot reads it alike).
    return {str(name): str(option) for name, option in (value or {}).items()} if isinstance(value, dict) else {}


OPTIONS_DESCRIPTION = (
    "Provider options this model stands for, passed to whichever adapter serves it (one without such a "
    'setting ignores it), e.g. {"rendering_speed": "TURBO"} for Ideogram. Known: '
    + "; ".join(f"{name}: {' | '.join(values)}" for name, values in PROVIDER_OPTIONS.items())
    + ". Replaced as a whole; {} removes them all."
)
ModelPrice = Annotated[Multiplier, Field(le=MAX_CREDITS_PER_IMAGE)]
ModelMultiplier = Annotated[Multiplier, Field(le=MAX_MULTIPLIER)]
MaxImages = Annotated[int, Field(ge=1, le=10)]
MaxPromptChars = Annotated[int, Field(ge=1, le=100_000)]
AspectRatioList = Annotated[list[str], Field(min_length=1), AfterValidator(_ratios)]
ImageSizeList = Annotated[list[str], Field(min_length=1), AfterValidator(_sizes)]
ParameterList = Annotated[list[str], AfterValidator(_parameters)]
Description = Annotated[Text, Field(max_length=500)]
ProviderOptions = Annotated[dict[str, str], AfterValidator(_provider_options), Field(description=OPTIONS_DESCRIPTION)]


class ModelIn(_AcceptsWhatGetReturns):
    """PUT: create or replace. A new model needs only `credits_per_image` (the rest has defaults);
    replacing an existing one needs every field below, so that a partial body cannot wipe what it
    leaves out (PATCH changes only some)."""

    credits_per_image: ModelPrice
    multiplier: ModelMultiplier = Decimal(1)
    aliases: list[Text] = Field(default_factory=list)
    max_images: MaxImages = 4
    max_prompt_chars: MaxPromptChars = 4000
    aspect_ratios: AspectRatioList = Field(default_factory=lambda: list[str](ASPECT_RATIOS))
    image_sizes: ImageSizeList = Field(default_factory=lambda: list[str]([DEFAULT_IMAGE_SIZE]))
    parameters: ParameterList = Field(default_factory=list)
    description: Description = ""
    enabled: bool = True
    options: ProviderOptions = Field(default_factory=dict)

    def missing(self) -> list[str]:
        """The writable fields this body left out (what a replace would reset to defaults)."""
        return [name for name in type(self).model_fields if name not in self.model_fields_set]

    def fields(self) -> dict[str, Any]:
        """Every field as the model row stores it (amounts as Decimal, not their JSON strings)."""
        return {name: getattr(self, name) for name in type(self).model_fields}


class ModelPatch(_AcceptsWhatGetReturns):
    """PATCH: only the fields sent change. None of them may be null."""

    credits_per_image: ModelPrice | None = None
    multiplier: ModelMultiplier | None = None
    aliases: list[Text] | None = None
    max_images: MaxImages | None = None
    max_prompt_chars: MaxPromptChars | None = None
    aspect_ratios: AspectRatioList | None = None
    image_sizes: ImageSizeList | None = None
    parameters: ParameterList | None = None
    description: Description | None = None
    enabled: bool | None = None
    options: ProviderOptions | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only on fields that were sent: an explicit null is refused, naming the field.
        if value is None:
            raise ValueError("must not be null (leave the field out to keep its value)")
        return value

    def changes(self) -> dict[str, Any]:
        """The fields sent, as the model row stores them (amounts as Decimal)."""
        return {name: getattr(self, name) for name in type(self).model_fields if name in self.model_fields_set}


class ModelOut(BaseModel):
    id: str
    object: str = "model"
    credits_per_image: Credits
    multiplier: Credits
    aliases: list[str]
    max_images: int
    max_prompt_chars: int
    aspect_ratios: list[str]
    image_sizes: list[str]
    parameters: list[str]
    description: str
    enabled: bool
    options: Annotated[dict[str, str], BeforeValidator(_shown_options), Field(description=OPTIONS_DESCRIPTION)]
    updated_at: datetime

    @classmethod
    def of(cls, row: CatalogModel) -> ModelOut:
        return cls.model_validate(row, from_attributes=True)


class ChannelAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: Text | None = Field(None, description="Write-only secret.")
    api_key_env: Text | None = Field(None, description="Name of an environment variable holding the key.")
    service_account_file: Text | None = Field(None, description="Path to a Google service-account JSON file.")
    style: Literal["x-goog-api-key", "bearer", "query"] | None = None
    api_key_set: bool | None = Field(None, description="Read-only: whether a secret is stored.")


class ChannelFields(_AcceptsWhatGetReturns):
    # The gateway's own record of an automatic disable: set by the gateway, cleared by enabling.
    READ_ONLY: ClassVar[frozenset[str]] = _AcceptsWhatGetReturns.READ_ONLY | {"disabled_reason", "credential_failures"}

    name: Text | None = Field(None, min_length=1, max_length=200)
    provider: str | None = None
    base_url: Text | None = Field(None, max_length=500)
    auth: ChannelAuth | None = None
    models: dict[Text, Text] | None = Field(None, description='catalog model id -> upstream model id; "*" = all')
    priority: int | None = Field(None, ge=-1000, le=1000)
    weight: int | None = Field(None, ge=1, le=1000)
    multiplier: Annotated[Multiplier, Field(le=MAX_MULTIPLIER)] | None = None
    enabled: bool | None = None
    timeout_s: float | None = Field(None, gt=0, le=900)
    max_concurrency: int | None = Field(None, ge=1, le=MAX_CONCURRENCY)
    retry_ambiguous: bool | None = Field(
        None, description="Fail over after a timeout mid-request (the upstream may bill twice)."
    )
    costs: dict[UpstreamModel, Cost] | None = Field(
        None,
        description=(
            "upstream model id -> what the provider charges per image it returns, in its currency "
            '(e.g. {"imagen-4.0-generate-001": "0.04"}); each attempt\'s upstream_cost is that times '
            "the images the upstream returned. Replaced as a whole; {} removes every cost."
        ),
    )

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str | None) -> str | None:
        if value is not None and value not in PROVIDER_NAMES:
            raise ValueError(f"unknown provider {value!r}; known: {', '.join(PROVIDER_NAMES)}")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/") if value else value

    def changes(self) -> dict[str, Any]:
        fields = self.model_dump(exclude_unset=True, exclude={"auth"})
        # null means "leave as is" for fields that cannot be empty; max_concurrency null = no limit.
        fields = {k: v for k, v in fields.items() if v is not None or k == "max_concurrency"}
        if self.auth is not None:
            fields["auth"] = self.auth.model_dump(exclude_unset=True, exclude={"api_key_set"})
        return fields


class ChannelCreate(ChannelFields):
    name: Text = Field(min_length=1, max_length=200)
    provider: str


class ChannelHealthOut(BaseModel):
    state: str = Field(description="closed | open | half_open | cooling")
    consecutive_failures: int
    success_rate: float | None = Field(description="Share of the last 50 calls that succeeded.")
    latency_ms_p50: int | None
    last_error: str | None = Field(description="Last upstream error, credentials removed.")
    last_error_at: datetime | None
    retry_at: datetime | None = Field(description="When an open or cooling channel is tried again.")


class ChannelOut(BaseModel):
    id: str
    name: str
    provider: str
    base_url: str
    auth: dict[str, Any]
    models: dict[str, str]
    priority: int
    weight: int
    multiplier: Credits
    enabled: bool
    timeout_s: float
    max_concurrency: int | None
    retry_ambiguous: bool
    costs: dict[str, Credits] = Field(
        description="upstream model id -> cost per image returned, in the provider's currency."
    )
    disabled_reason: str | None = Field(
        None,
        description=(
            "Why the gateway disabled the channel by itself (its upstream refused the credentials or "
            "no longer knew the model on GATEWAY_AUTO_DISABLE_AFTER calls in a row); cleared when an "
            "operator enables it. Read-only."
        ),
    )
    credential_failures: int = Field(
        0, description="Upstream 401/403/404 answers in a row so far (a call that works resets it). Read-only."
    )
    created_at: datetime
    updated_at: datetime
    health: ChannelHealthOut | None = Field(None, description="Live health, read-only.")

    @classmethod
    def of(cls, row: Channel, health: ChannelHealthOut | None = None) -> ChannelOut:
        return cls(
            id=row.id,
            name=row.name,
            provider=row.provider,
            base_url=row.base_url,
            auth=redact_auth(row.auth or {}),
            models=row.models,
            priority=row.priority,
            weight=row.weight,
            multiplier=row.multiplier,
            enabled=row.enabled,
            timeout_s=row.timeout_s,
            max_concurrency=row.max_concurrency,
            retry_ambiguous=row.retry_ambiguous,
            costs={upstream: Decimal(cost) for upstream, cost in (row.costs or {}).items()},
            disabled_reason=row.disabled_reason,
            credential_failures=row.credential_failures,
            created_at=row.created_at,
            updated_at=row.updated_at,
            health=health,
        )


class ChannelTestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Text | None = Field(
        None,
        min_length=1,
        max_length=120,
        description="Catalog model id or alias the channel maps; default: the first model it maps.",
    )


class ChannelTestOut(BaseModel):
    ok: bool = Field(description="The upstream delivered the test image.")
    latency_ms: int
    http_status: int | None = Field(description="The upstream's HTTP status; null when it gave no answer.")
    error: str | None = Field(description="Why the test failed, the channel's credentials removed.")
    images: int = Field(description="Images delivered (never stored or returned).")


def redact_auth(auth: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in auth.items() if k not in SECRET_AUTH_FIELDS}
    shown["api_key_set"] = bool(auth.get("api_key"))
    return shown


def _subset(values: list[str], allowed: tuple[str, ...]) -> list[str]:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"unknown value(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return list(dict.fromkeys(values))
