"""The `google-imagen` provider: Imagen's `:predict` on the Gemini API, Vertex AI or a relay.

Vertex channels (a `/publishers/google` base URL or a service-account file) get the full parameter
set; the Gemini API and relays get the subset the Gemini API accepts, and requests needing more are
refused before any credits are held. Wire details live in `app.providers.imagen_wire`.
"""

from __future__ import annotations

import httpx

from app.catalog.snapshot import ChannelSpec
from app.generation.types import MIME_TYPES, ImageRequest, ImageResult
from app.providers.credentials import GoogleTokenSource, RequestAuth, channel_api_key, key_auth
from app.providers.errors import UpstreamError, UpstreamRejected
from app.providers.imagen_wire import (
    is_fast,
    is_vertex,
    parse_predictions,
    predict_body,
    predict_url,
    unsupported_parameters,
)
from app.providers.upstream_http import post_json

DEFAULT_KEY_STYLE = "x-goog-api-key"
REDACTED = "[redacted]"


class GoogleImagenProvider:
    name = "google-imagen"

    def __init__(self, http: httpx.AsyncClient, tokens: GoogleTokenSource) -> None:
        self.http = http
        self.tokens = tokens

    def unsupported(self, request: ImageRequest, channel: ChannelSpec) -> list[str]:
        # `request.model` may be an alias the channel's mapping does not name; then the upstream
        # model is unknown here and `generate` repeats the check with the real one.
        upstream = channel.upstream_model(request.model)
        fast = upstream is not None and is_fast(upstream)
        return unsupported_parameters(request, vertex=is_vertex(channel), fast=fast)

    async def generate(self, request: ImageRequest, channel: ChannelSpec, upstream_model: str) -> ImageResult:
        vertex = is_vertex(channel)
        fast = is_fast(upstream_model)
        missing = unsupported_parameters(request, vertex=vertex, fast=fast)
        if missing:
            raise UpstreamRejected(f"channel {channel.name} ({upstream_model}) cannot honour: {', '.join(missing)}")
        auth, secret = await self._auth(channel)
        try:
            body = await post_json(
                self.http,
                predict_url(channel.base_url, upstream_model),
                body=predict_body(request, vertex=vertex, fast=fast),
                headers=auth.headers,
                params=auth.params or None,
                timeout_s=channel.timeout_s,
            )
        except UpstreamError as exc:
            redact(exc, secret)
            raise
        return parse_predictions(body, requested=request.n, default_mime=MIME_TYPES[request.output_format])

    async def _auth(self, channel: ChannelSpec) -> tuple[RequestAuth, str | None]:
        """How this channel authenticates, and the secret that must never appear in an error."""
        key_file = channel.auth.get("service_account_file")
        if isinstance(key_file, str) and key_file:
            token = await self.tokens.token(key_file)
            return RequestAuth(headers={"authorization": f"Bearer {token}"}), token
        return key_auth(channel, DEFAULT_KEY_STYLE), channel_api_key(channel)


def redact(exc: UpstreamError, secret: str | None) -> None:
    """Upstreams sometimes quote the credential they refused; it must not reach callers or logs."""
    if secret and secret in exc.message:
        exc.message = exc.message.replace(secret, REDACTED)
        exc.args = (exc.message,)
