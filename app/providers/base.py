"""The adapter contract every upstream provider implements."""

from __future__ import annotations

from typing import Protocol

from app.images import ImageRequest, ImageResult
from app.specs import ChannelSpec


class ImageProvider(Protocol):
    """Turns one canonical request into images from one channel.

    `upstream_model` is the channel's mapping of the requested catalog model. Implementations
    raise the typed errors of `app.providers.errors` and return only delivered images (those the
    upstream filtered are listed in `ImageResult.filtered_reasons`).
    """

    name: str
    # True only for the built-in stand-in (`local`): it draws labelled placeholder images, not
    # generated ones. The edge tells callers so; nothing checks a provider's name for it.
    placeholder: bool

    def unsupported(self, request: ImageRequest, channel: ChannelSpec, upstream_model: str) -> list[str]:
        """Parameters of `request` this provider cannot honour on `channel` with `upstream_model`
        (checked before any credits are held, so the caller gets a 400 that names them)."""
        ...

    async def generate(self, request: ImageRequest, channel: ChannelSpec, upstream_model: str) -> ImageResult: ...
