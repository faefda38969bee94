"""A fake xAI images API: a real HTTP server on 127.0.0.1 answering `POST /v1/images/generations`
in xAI's documented format (docs/providers/xai.md), scripted per test.

`fake.mode` picks the answer: "ok" (b64_json images, one per `n` asked), "data_url" (the same,
written as `data:image/jpeg;base64,…`), "blocked" (input moderation: `block_reason`, no data),
"not_image", or an error: "flat_400" (`{"code": "400", "error": "…"}`), "nested_400"
(`{"error": {"message", "type", "code"}}`), "unsupported_arg", "moderation_400", "401",
"403_balance", "429", "529", "500". Every answer that carries images reports
`usage.cost_in_usd_ticks` = `ticks_per_image` × images.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from PIL import Image

from tests.support.fakes.upstream import FakeUpstream, Received, Reply

GENERATIONS = "/v1/images/generations"
TICKS_PER_IMAGE = 200_000_000  # $0.02, xAI's list price for grok-imagine-image


@cache
def tiny_jpeg_b64() -> str:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (30, 90, 200)).save(out, format="JPEG")
    return base64.b64encode(out.getvalue()).decode()


ERRORS: dict[str, Reply] = {
    "flat_400": Reply(400, {"code": "400", "error": "Prompt is too long: 9000 > 8000 characters"}),
    "nested_400": Reply(
        400, {"error": {"message": "n must be between 1 and 10", "type": "invalid_request_error", "code": "400"}}
    ),
    "unsupported_arg": Reply(400, {"code": "400", "error": "Argument not supported: size"}),
    "moderation_400": Reply(400, {"code": "400", "error": "Generated image rejected by content moderation."}),
    "401": Reply(401, {"code": "401", "error": "Incorrect API key provided: xa***42."}),
    "403_balance": Reply(
        403,
        {
            "code": "403",
            "error": "Your team has either used all available credits or reached its monthly spending limit.",
        },
    ),
    "429": Reply(429, {"code": "429", "error": "Too many requests"}, headers={"retry-after": "7"}),
    "529": Reply(529, {"code": "529", "error": "The service is currently overloaded"}),
    "500": Reply(500, {"code": "500", "error": "Internal error"}),
}


class FakeXAI:
    def __init__(self, server: FakeUpstream) -> None:
        self.server = server
        self.url = f"{server.url}/v1"
        self.mode = "ok"
        self.ticks_per_image = TICKS_PER_IMAGE
        server.respond = self._respond

    @property
    def requests(self) -> list[Received]:
        return self.server.requests

    def _respond(self, received: Received) -> Reply:
        if received.path != GENERATIONS or received.method != "POST":
            return Reply(404, {"code": "404", "error": f"no route {received.path}"})
        if self.mode in ERRORS:
            return ERRORS[self.mode]
        n = int(received.json.get("n", 1))
        usage = {"cost_in_usd_ticks": self.ticks_per_image * n}
        if self.mode == "blocked":
            return Reply(json={"block_reason": "Prompt flagged by input moderation", "data": [], "usage": usage})
        b64 = {
            "ok": tiny_jpeg_b64(),
            "data_url": f"data:image/jpeg;base64,{tiny_jpeg_b64()}",
            "not_image": base64.b64encode(b"<html>hello</html>").decode(),
        }[self.mode]
        item = {"b64_json": b64, "mime_type": "image/jpeg", "revised_prompt": "", "url": None}
        return Reply(json={"block_reason": None, "data": [item] * n, "usage": usage})


@contextmanager
def fake_xai() -> Iterator[FakeXAI]:
    server = FakeUpstream()
    server.start()
    try:
        yield FakeXAI(server)
    finally:
        server.stop()
