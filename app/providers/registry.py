"""Adapters by provider name. Routing looks a channel's provider up here; no if/elif on names.

Each factory imports its adapter when it is called, so reading `PROVIDER_NAMES` (the admin API
validates channels against it) does not import every adapter and its wire format.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from app.net.guarded_fetch import GuardedFetcher
from app.providers.base import ImageProvider
from app.providers.credentials import GoogleTokenSource


@dataclass(frozen=True)
class ProviderDeps:
    """What adapters share for the process lifetime."""

    http: httpx.AsyncClient
    google_tokens: GoogleTokenSource
    # For every URL an upstream hands over (images as URLs): SSRF-guarded, no credentials.
    fetcher: GuardedFetcher


ProviderFactory = Callable[[ProviderDeps], ImageProvider]


def _local(_deps: ProviderDeps) -> ImageProvider:
    from app.providers.local import LocalProvider

    return LocalProvider()


def _google_imagen(deps: ProviderDeps) -> ImageProvider:
    from app.providers.google_imagen import GoogleImagenProvider

    return GoogleImagenProvider(deps.http, deps.google_tokens)


def _gemini_image(deps: ProviderDeps) -> ImageProvider:
    from app.providers.gemini_image import GeminiImageProvider

    return GeminiImageProvider(deps.http, deps.google_tokens)


def _openai_images(deps: ProviderDeps) -> ImageProvider:
    from app.providers.openai_images import OpenAIImagesProvider

    return OpenAIImagesProvider(deps.http, deps.fetcher)


def _xai_images(deps: ProviderDeps) -> ImageProvider:
    from app.providers.xai_images import XAIImagesProvider

    return XAIImagesProvider(deps.http)


def _ideogram(deps: ProviderDeps) -> ImageProvider:
    from app.providers.ideogram import IdeogramProvider

    return IdeogramProvider(deps.http, deps.fetcher)


FACTORIES: Mapping[str, ProviderFactory] = {
    "local": _local,
    "google-imagen": _google_imagen,
    "gemini-image": _gemini_image,
    "openai-images": _openai_images,
    "ideogram": _ideogram,
    "xai-images": _xai_images,
}

PROVIDER_NAMES = tuple(FACTORIES)


def build_providers(http: httpx.AsyncClient, fetcher: GuardedFetcher) -> dict[str, ImageProvider]:
    deps = ProviderDeps(http=http, google_tokens=GoogleTokenSource(), fetcher=fetcher)
    return {name: factory(deps) for name, factory in FACTORIES.items()}
