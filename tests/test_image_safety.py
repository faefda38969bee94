"""Only images are delivered, charged and served: whatever an upstream labels its answer, every
adapter checks the bytes (PNG, JPEG or WebP), reports the type it found, and treats anything
else as a retryable upstream fault, so routing fails over and the caller pays nothing.
Files are served with the type from their bytes and headers that stop a browser from treating
one as a page.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.fakes.upstream import FakeUpstream, Received, Reply, tiny_png_b64
from tests.support.harness import Harness

API_KEY = "AIzaSyEchoedChannelKey0123456789abcdefAB"  # 40 base64-alphabet characters: "valid" base64
PNG_B64 = tiny_png_b64((30, 30, 200))
HEALTHY_PNG_B64 = tiny_png_b64((30, 200, 30))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class Kind:
    """One provider: how its channel is configured and how its upstream answers with an image."""

    provider: str
    path: str
    upstream_model: str
    answer: Callable[[Received, str, str], dict[str, Any]]


def imagen_answer(received: Received, data: str, mime: str) -> dict[str, Any]:
    count = received.json["parameters"]["sampleCount"]
    return {"predictions": [{"bytesBase64Encoded": data, "mimeType": mime}] * count}


def gemini_answer(_received: Received, data: str, mime: str) -> dict[str, Any]:
    part = {"inlineData": {"mimeType": mime, "data": data}}
    return {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP"}]}


def openai_answer(received: Received, data: str, _mime: str) -> dict[str, Any]:
    return {"created": 1, "data": [{"b64_json": data}] * received.json["n"]}


KINDS = [
    pytest.param(Kind("google-imagen", "v1beta", "imagen-4.0-generate-001", imagen_answer), id="google-imagen"),
    pytest.param(Kind("gemini-image", "v1beta", "gemini-3.1-flash-image", gemini_answer), id="gemini-image"),
    pytest.param(Kind("openai-images", "v1", "gpt-image-1.5", openai_answer), id="openai-images"),
]

NOT_IMAGES = [
    pytest.param("!!not base64!!", "image/png", id="not-base64"),
    pytest.param(b64(b"Thank you for your request. Here is your image."), "image/png", id="plain-text"),
    pytest.param(b64(b"<html><body><script>alert(document.cookie)</script></body></html>"), "text/html", id="html"),
    pytest.param(
        b64(b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'),
        "image/svg+xml",
        id="svg-with-script",
    ),
    pytest.param(b64(b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00;"), "image/gif", id="gif"),
    # A relay that echoes the credential it received where the image should be.
    pytest.param(API_KEY, "image/png", id="echoed-channel-key"),
    pytest.param(PNG_B64.rstrip("="), "image/png", id="png-with-broken-padding"),
]


class Channels:
    """Channels of one provider kind behind one fake server: /<name>/… is channel <name>."""

    def __init__(self, gw: Harness, upstream: FakeUpstream, kind: Kind) -> None:
        self.gw, self.upstream, self.kind = gw, upstream, kind
        self.payloads: dict[str, tuple[str, str]] = {}
        upstream.respond = self._respond

    def _respond(self, received: Received) -> Reply:
        data, mime = self.payloads[received.path.split("/")[1]]
        return Reply(json=self.kind.answer(received, data, mime))

    async def add(self, name: str, data: str, mime: str, *, priority: int, only: bool = False) -> None:
        self.payloads[name] = (data, mime)
        await self.gw.add_channel(
            only=only,
            name=name,
            provider=self.kind.provider,
            base_url=f"{self.upstream.url}/{name}/{self.kind.path}",
            auth={"api_key": API_KEY},
            models={"imagen4": self.kind.upstream_model},
            priority=priority,
        )

    def calls(self, name: str) -> int:
        return sum(1 for r in self.upstream.requests if r.path.startswith(f"/{name}/"))


async def assert_nothing_charged(gw: Harness, account_id: str) -> None:
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == ("100", "0")
    assert await gw.ledger_problems() == []


@pytest.mark.parametrize(("data", "mime"), NOT_IMAGES)
@pytest.mark.parametrize("kind", KINDS)
async def test_a_non_image_is_not_delivered_and_not_charged(
    gw: Harness, upstream: FakeUpstream, kind: Kind, data: str, mime: str
) -> None:
    channels = Channels(gw, upstream, kind)
    await channels.add("bad", data, mime, priority=10, only=True)
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"prompt": "a lighthouse"})

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_error"
    assert API_KEY not in response.text and API_KEY[:16] not in response.text
    await assert_nothing_charged(gw, account_id)


@pytest.mark.parametrize(("data", "mime"), NOT_IMAGES[:4])
@pytest.mark.parametrize("kind", KINDS)
async def test_a_non_image_fails_over_to_a_healthy_channel(
    gw: Harness, upstream: FakeUpstream, kind: Kind, data: str, mime: str
) -> None:
    channels = Channels(gw, upstream, kind)
    await channels.add("bad", data, mime, priority=10, only=True)
    await channels.add("good", HEALTHY_PNG_B64, "image/png", priority=0)
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"prompt": "a lighthouse"})

    assert response.status_code == 200, response.text
    assert response.json()["data"] == [{"b64_json": HEALTHY_PNG_B64, "mime_type": "image/png"}]
    assert (channels.calls("bad"), channels.calls("good")) == (1, 1)
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == ("92", "0")  # one imagen4 image, from the good channel
    assert await gw.ledger_problems() == []


@pytest.mark.parametrize("kind", KINDS)
async def test_the_reported_type_comes_from_the_bytes_not_the_label(
    gw: Harness, upstream: FakeUpstream, kind: Kind
) -> None:
    channels = Channels(gw, upstream, kind)
    await channels.add("mislabelled", PNG_B64, "image/jpeg", priority=10, only=True)
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"prompt": "a lighthouse"})

    assert response.status_code == 200, response.text
    assert response.json()["data"] == [{"b64_json": PNG_B64, "mime_type": "image/png"}]
    assert (await gw.account(account_id))["balance"] == "92"


async def test_files_are_served_with_their_type_and_headers_that_keep_them_images(
    gw: Harness, upstream: FakeUpstream
) -> None:
    channels = Channels(gw, upstream, Kind("google-imagen", "v1beta", "imagen-4.0-generate-001", imagen_answer))
    await channels.add("mislabelled", PNG_B64, "text/html", priority=10, only=True)
    _, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"prompt": "a lighthouse", "response_format": "url"})
    assert response.status_code == 200, response.text
    assert response.json()["data"][0]["mime_type"] == "image/png"
    url = response.json()["data"][0]["url"]
    file_id = url.split("/v1/files/", 1)[1].split("?", 1)[0]

    served = await gw.http.get(url)

    assert served.status_code == 200, served.text
    assert served.content == base64.b64decode(PNG_B64)
    assert served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"
    csp = served.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp
    assert served.headers["content-disposition"] == f'inline; filename="{file_id}.png"'
