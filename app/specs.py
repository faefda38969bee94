"""What the catalog holds, as plain immutable values: models, channels and the snapshot of both.

Every layer may read these (providers take a `ChannelSpec`, routing orders them, generation
resolves a `ModelSpec`); how they are loaded from the database and cached is
`app.catalog.snapshot`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    id: str
    aliases: tuple[str, ...]
    credits_per_image: Decimal
    multiplier: Decimal
    max_images: int
    max_prompt_chars: int
    aspect_ratios: tuple[str, ...]
    image_sizes: tuple[str, ...]
    parameters: tuple[str, ...]
    description: str
    enabled: bool
    # Provider options (app.images.PROVIDER_OPTIONS), e.g. {"rendering_speed": "TURBO"}.
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    id: str
    name: str
    provider: str
    base_url: str
    auth: dict[str, Any]
    models: dict[str, str]
    priority: int
    weight: int
    multiplier: Decimal
    enabled: bool
    timeout_s: float
    max_concurrency: int | None
    retry_ambiguous: bool = False
    # Why the channel cannot be routed to (a stored secret no configured key decrypts); None
    # when it can. It stays in the snapshot so that it still counts as a channel of its models.
    unusable: str | None = None
    # upstream model id -> what the provider charges per image it returns: each attempt's
    # upstream_cost is one dict lookup away (app.routing.attempts).
    costs: dict[str, Decimal] = field(default_factory=dict)
    # Credential (401/403) or model-gone (404) answers in a row when the snapshot was taken: a
    # call that works writes the reset only when this is nonzero (app.routing.channel_faults).
    credential_failures: int = 0

    def upstream_model(self, model_id: str) -> str | None:
        """The upstream model this channel calls for a catalog model, or None if it does not serve it."""
        mapped = self.models.get(model_id)
        if mapped is None:
            mapped = self.models.get(WILDCARD)
        if mapped is None:
            return None
        return model_id if mapped == WILDCARD else mapped


@dataclass(frozen=True)
class CatalogSnapshot:
    models: dict[str, ModelSpec]
    channels: tuple[ChannelSpec, ...]
    aliases: dict[str, str] = field(default_factory=dict)

    def resolve(self, name: str) -> ModelSpec | None:
        model_id = name if name in self.models else self.aliases.get(name)
        return self.models.get(model_id) if model_id else None

    def channels_for(self, model_id: str) -> list[tuple[ChannelSpec, str]]:
        """Enabled channels that serve the model, each with its upstream model id."""
        served = []
        for channel in self.channels:
            upstream = channel.upstream_model(model_id) if channel.enabled and not channel.unusable else None
            if upstream is not None:
                served.append((channel, upstream))
        return served
