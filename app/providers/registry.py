"""Adapters by provider name. Routing looks a channel's provider up here; no if/elif on names."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from app.net.guarded_fetch import GuardedFetcher
from app.providers.base import ImageProvider
from app.providers.credentials import GoogleTokenSource
from app.providers.gemini_image import GeminiImageProvider
from app.providers.google_imagen import GoogleImagenProvider
from app.providers.local import LocalProvider
from app.providers.openai_images import OpenAIImagesProvider


@dataclass(frozen=True)
class ProviderDeps:
    """What adapters share for the process lifetime."""

    http: httpx.AsyncClient
    google_tokens: GoogleTokenSource
    # For every URL an upstream hands over (images as URLs): SSRF-guarded, no credentials.
    fetcher: GuardedFetcher


ProviderFactory = Callable[[ProviderDeps], ImageProvider]

FACTORIES: Mapping[str, ProviderFactory] = {
    "local": lambda _deps: LocalProvider(),
    "google-imagen": lambda deps: GoogleImagenProvider(deps.http, deps.google_tokens),
    "gemini-image": lambda deps: GeminiImageProvider(deps.http, deps.google_tokens),
    "openai-images": lambda deps: OpenAIImagesProvider(deps.http, deps.fetcher),
}

PROVIDER_NAMES = tuple(FACTORIES)


def build_providers(http: httpx.AsyncClient, fetcher: GuardedFetcher) -> dict[str, ImageProvider]:
    deps = ProviderDeps(http=http, google_tokens=GoogleTokenSource(), fetcher=fetcher)
    return {name: factory(deps) for name, factory in FACTORIES.items()}
