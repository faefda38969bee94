"""Image URLs an upstream hands the gateway go through one guarded fetcher: the callbacks' SSRF
rules, the operator's allow-list, no redirects, only image bytes.

A hostile (or compromised) `openai-images` upstream answers with URLs aimed at a loopback
"sentinel" on 127.0.0.3 (and [::1] where the machine has it) that serves a PNG to anyone who
connects: a guard that let one through would show up as a connection and as a charged image. Only
127.0.0.1, where the fake upstream itself listens, is allow-listed, the way an operator opens one
internal image store. Nothing here ever connects off this machine.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.net.guarded_fetch import FetchFailed, GuardedFetcher
from app.settings import Settings
from tests.support.fakes.dns import FakeResolver
from tests.support.fakes.upstream import FakeUpstream, Received, Reply, tiny_png_b64
from tests.support.harness import Harness, running_app
from tests.support.sentinel import ConnectionSentinel, watching

GENERATIONS = "/v1/images/generations"
MODEL = "gpt-image-1.5-official"  # 10 credits per image
API_KEY = "sk-test-url-fetch-5c4b3a291807"
SENTINEL_HOST = "127.0.0.3"
PNG = base64.b64decode(tiny_png_b64((20, 200, 20)))


@pytest.fixture
async def sentinel() -> AsyncIterator[ConnectionSentinel]:
    # It hands out a valid PNG, so a fetch that got through would be delivered and charged.
    head = f"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {len(PNG)}\r\nconnection: close\r\n\r\n"
    async with watching(SENTINEL_HOST, head.encode() + PNG) as watcher:
        yield watcher


@pytest.fixture
async def loopback_gw(settings: Settings) -> AsyncIterator[Harness]:
    """The operator allows exactly 127.0.0.1 (the fake upstream): 127.0.0.3 and [::1] stay refused."""
    async with running_app(settings.model_copy(update={"callback_allow_networks": "127.0.0.1/32"})) as gw:
        yield gw


async def openai_channel(gw: Harness, upstream: FakeUpstream) -> dict[str, Any]:
    return await gw.add_channel(
        only=True,
        provider="openai-images",
        base_url=upstream.url + "/v1",
        auth={"api_key": API_KEY},
        models={MODEL: "gpt-image-1.5"},
    )


def answer_with_url(url: str, image: Reply | None = None) -> Any:
    def respond(received: Received) -> Reply:
        if received.path == GENERATIONS:
            return Reply(json={"created": 1, "data": [{"url": url}]})
        return image or Reply(body=PNG, headers={"content-type": "image/png"})

    return respond


async def assert_refused_and_free(gw: Harness, response: httpx.Response, account_id: str) -> None:
    assert response.status_code in (502, 504), response.text
    assert "x.png" not in response.text  # the URL is never quoted
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == ("100", "0")
    assert await gw.ledger_problems() == []


async def last_error(gw: Harness, channel_id: str) -> str:
    channel = (await gw.admin("GET", f"/admin/channels/{channel_id}")).json()
    error: str = channel["health"]["last_error"]
    return error


REFUSED_URLS = [
    pytest.param("http://127.0.0.3:{port}/x.png", id="loopback"),
    pytest.param("http://[::ffff:127.0.0.3]:{port}/x.png", id="ipv4-mapped-ipv6"),
    pytest.param("http://[::ffff:7f00:3]:{port}/x.png", id="ipv4-mapped-hex"),
    pytest.param("http://[::1]:{port}/x.png", id="ipv6-loopback"),
    pytest.param("http://2130706435:{port}/x.png", id="decimal-ipv4"),
    pytest.param("http://0x7f.0.0.3:{port}/x.png", id="hex-ipv4"),
    pytest.param("http://127.3:{port}/x.png", id="short-ipv4"),
    pytest.param("http://169.254.169.254/latest/meta-data/x.png", id="cloud-metadata"),
    pytest.param("http://[fd00:ec2::254]/latest/x.png", id="cloud-metadata-ipv6"),
    pytest.param("http://10.0.0.7/x.png", id="private"),
    pytest.param("file:///etc/passwd#x.png", id="file-scheme"),
    pytest.param("http://user:pw@127.0.0.1:{port}/x.png", id="credentials-in-url"),
]


@pytest.mark.parametrize("template", REFUSED_URLS)
async def test_image_urls_into_the_gateways_network_are_refused_without_a_connection(
    loopback_gw: Harness, upstream: FakeUpstream, sentinel: ConnectionSentinel, template: str
) -> None:
    gw = loopback_gw
    channel = await openai_channel(gw, upstream)
    upstream.respond = answer_with_url(template.format(port=sentinel.port))
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "a leaf"})

    await assert_refused_and_free(gw, response, account_id)
    assert sentinel.connections == 0
    assert upstream.paths() == [GENERATIONS]
    error = await last_error(gw, channel["id"])
    assert "refused by the SSRF guard" in error and "x.png" not in error


async def test_without_an_allow_list_even_the_upstreams_own_address_is_refused(
    gw: Harness, upstream: FakeUpstream
) -> None:
    await openai_channel(gw, upstream)
    upstream.respond = answer_with_url(f"{upstream.url}/files/x.png")
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "a leaf"})

    await assert_refused_and_free(gw, response, account_id)
    assert upstream.paths() == [GENERATIONS]  # the image URL was never requested


@pytest.mark.parametrize("location", ["http://127.0.0.3:{port}/x.png", "/files/other.png"])
async def test_redirects_are_not_followed(
    loopback_gw: Harness, upstream: FakeUpstream, sentinel: ConnectionSentinel, location: str
) -> None:
    gw = loopback_gw
    await openai_channel(gw, upstream)
    moved = Reply(302, body=b"", headers={"location": location.format(port=sentinel.port)})
    upstream.respond = answer_with_url(f"{upstream.url}/files/moved", image=moved)
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "a leaf"})

    await assert_refused_and_free(gw, response, account_id)
    assert sentinel.connections == 0
    assert upstream.paths() == [GENERATIONS, "/files/moved"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html><script>alert(document.cookie)</script></html>", id="html"),
        pytest.param(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", id="gif"),
        pytest.param(b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', id="svg"),
    ],
)
async def test_a_fetched_url_that_is_not_a_png_jpeg_or_webp_is_not_delivered(
    loopback_gw: Harness, upstream: FakeUpstream, body: bytes
) -> None:
    gw = loopback_gw
    await openai_channel(gw, upstream)
    upstream.respond = answer_with_url(f"{upstream.url}/files/x.png", image=Reply(body=body))
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "a leaf"})

    await assert_refused_and_free(gw, response, account_id)


async def test_an_allowed_host_name_is_fetched_by_name_and_charged(
    loopback_gw: Harness, upstream: FakeUpstream
) -> None:
    gw = loopback_gw
    await openai_channel(gw, upstream)
    # `localhost` is always loopback (RFC 6761): the guard needs no DNS for it, and 127.0.0.1 is allowed.
    upstream.respond = answer_with_url(f"http://localhost:{upstream.port}/files/img-1.png?sig=abc")
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "a leaf"})

    assert response.status_code == 200, response.text
    assert response.json()["data"] == [{"b64_json": base64.b64encode(PNG).decode(), "mime_type": "image/png"}]
    fetched = upstream.requests[1]
    assert (fetched.path, fetched.query) == ("/files/img-1.png", {"sig": "abc"})
    assert fetched.headers["host"] == f"localhost:{upstream.port}"
    assert "authorization" not in fetched.headers  # the channel's key stays with the API
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == ("90", "0")
    assert await gw.ledger_problems() == []


# --- the fetcher on its own, with a fake DNS ------------------------------------------------------

DNS = {
    "images.example.test": ["127.0.0.1"],
    "sneaky.example.test": ["127.0.0.3"],
    "split.example.test": ["127.0.0.1", "127.0.0.3"],
}
ALLOW_ONE = [ipaddress.ip_network("127.0.0.1/32")]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


async def test_a_public_name_is_resolved_once_and_fetched_at_the_checked_address(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    upstream.respond = lambda _r: Reply(body=PNG)
    dns = FakeResolver(DNS)
    fetcher = GuardedFetcher(client, ALLOW_ONE, dns)

    content = await fetcher.get(f"http://images.example.test:{upstream.port}/a.png", timeout_s=5)

    assert content == PNG
    assert dns.lookups == ["images.example.test"]
    assert upstream.requests[0].headers["host"] == f"images.example.test:{upstream.port}"


@pytest.mark.parametrize("host", ["sneaky.example.test", "split.example.test"])
async def test_a_name_with_any_refused_address_is_not_fetched(
    client: httpx.AsyncClient, sentinel: ConnectionSentinel, host: str
) -> None:
    fetcher = GuardedFetcher(client, ALLOW_ONE, FakeResolver(DNS))

    with pytest.raises(FetchFailed) as caught:
        await fetcher.get(f"http://{host}:{sentinel.port}/x.png?sig=secret", timeout_s=5)

    assert caught.value.refused
    assert "secret" not in caught.value.reason and "x.png" not in caught.value.reason
    assert sentinel.connections == 0


async def test_a_body_past_the_cap_is_refused(client: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.respond = lambda r: Reply(body=PNG * 4) if r.path == "/big" else Reply(body=PNG)
    fetcher = GuardedFetcher(client, ALLOW_ONE, max_bytes=len(PNG) * 2)

    assert await fetcher.get(f"{upstream.url}/small", timeout_s=5) == PNG
    with pytest.raises(FetchFailed, match="larger than"):
        await fetcher.get(f"{upstream.url}/big", timeout_s=5)
