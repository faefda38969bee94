"""The `google-imagen` provider: Imagen's `:predict` on the Gemini API, Vertex AI or a relay.

Vertex channels (a `/publishers/google` base URL or a service-account file) get the full parameter
set; the Gemini API and relays get the subset the Gemini API accepts, and requests needing more are
refused before any credits are held. Wire details live in `app.providers.imagen_wire`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from app.images import ImageRequest, ImageResult
from app.providers.credentials import GoogleTokenSource, google_auth, redact_error
from app.providers.errors import UpstreamError, UpstreamRejected
from app.providers.imagen_wire import (
    google_base,
    is_fast,
    is_vertex,
    parse_predictions,
    predict_body,
    predict_url,
    unsupported_parameters,
)
from app.providers.upstream_http import post_json
from app.specs import ChannelSpec


def default_key_style(base_url: str) -> str:
    """Google's own hosts take `x-goog-api-key`; Imagen-format relays take a Bearer token (the
    contract's default). A channel's `auth.style` overrides either."""
    host = urlsplit(base_url).hostname or ""
    return "x-goog-api-key" if host.endswith("googleapis.com") else "bearer"


class GoogleImagenProvider:
    name = "google-imagen"
    placeholder = False

    def __init__(self, http: httpx.AsyncClient, tokens: GoogleTokenSource) -> None:
        self.http = http
        self.tokens = tokens

    def unsupported(self, request: ImageRequest, channel: ChannelSpec, upstream_model: str) -> list[str]:
        return unsupported_parameters(request, vertex=is_vertex(channel), fast=is_fast(upstream_model))

    async def generate(self, request: ImageRequest, channel: ChannelSpec, upstream_model: str) -> ImageResult:
        vertex = is_vertex(channel)
        fast = is_fast(upstream_model)
        missing = unsupported_parameters(request, vertex=vertex, fast=fast)
        if missing:
            raise UpstreamRejected(f"channel {channel.name} ({upstream_model}) cannot honour: {', '.join(missing)}")
        auth, secrets = await google_auth(channel, self.tokens, default_key_style(google_base(channel)))
        try:
            body = await post_json(
                self.http,
                predict_url(google_base(channel), upstream_model),
                body=predict_body(request, vertex=vertex, fast=fast),
                headers=auth.headers,
                params=auth.params or None,
                timeout_s=channel.timeout_s,
            )
        except UpstreamError as exc:
            raise redact_error(exc, secrets) from None
        return parse_predictions(body, requested=request.n)
