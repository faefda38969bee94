"""Several fake channels behind one fake upstream server, speaking Imagen's :predict."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.fakes.upstream import FakeUpstream, Received, Reply, tiny_png_b64
from tests.support.harness import Harness

Behaviour = Callable[[Received], Reply]


def ok(received: Received) -> Reply:
    count = received.json["parameters"]["sampleCount"]
    return Reply(json={"predictions": [{"bytesBase64Encoded": tiny_png_b64(), "mimeType": "image/png"}] * count})


def status(code: int, **headers: str) -> Behaviour:
    return lambda _r: Reply(code, {"error": {"code": code, "message": f"fake {code}", "status": "X"}}, headers=headers)


class Upstreams:
    """One fake server standing in for several channels: /<name>/v1beta/... is channel <name>."""

    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake
        self.behaviour: dict[str, Behaviour] = {}
        fake.respond = self._respond

    def _respond(self, received: Received) -> Reply:
        return self.behaviour[received.path.split("/")[1]](received)

    def calls(self, name: str) -> int:
        return sum(1 for r in self.fake.requests if r.path.startswith(f"/{name}/"))

    async def channel(self, gw: Harness, name: str, behaviour: Behaviour, **fields: Any) -> dict[str, Any]:
        self.behaviour[name] = behaviour
        return await gw.add_channel(
            name=name,
            provider="google-imagen",
            base_url=f"{self.fake.url}/{name}/v1beta",
            auth={"api_key": f"key-{name}", "style": "x-goog-api-key"},
            models={"imagen4": "imagen-4.0-generate-001"},
            **fields,
        )
