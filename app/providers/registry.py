"""Adapters by provider name. Routing looks a channel's provider up here; no if/elif on names."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import httpx

from app.providers.base import ImageProvider
from app.providers.local import LocalProvider

ProviderFactory = Callable[[httpx.AsyncClient], ImageProvider]

FACTORIES: Mapping[str, ProviderFactory] = {
    "local": lambda _http: LocalProvider(),
}

PROVIDER_NAMES = tuple(FACTORIES)


def build_providers(http: httpx.AsyncClient) -> dict[str, ImageProvider]:
    return {name: factory(http) for name, factory in FACTORIES.items()}
