"""The callback SSRF guard: every trick for reaching the gateway's own network is refused before
any connection is made, public destinations pass, and the operator's allow-list opens exactly the
networks it names.

Refused URLs are aimed at a loopback "sentinel" server that counts connections, so a guard that
let one through would show up as a connection, not just as a wrong return value.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator
from functools import cache

import httpx
import pytest

from app.callbacks import guarded_deliver
from app.net.ssrf import URLRefused, check_without_dns, parse_guarded_url, resolve_guarded_url
from app.settings import Settings
from tests.support.fakes.dns import FakeResolver
from tests.support.sentinel import ConnectionSentinel, watching


@pytest.fixture
async def sentinel() -> AsyncIterator[ConnectionSentinel]:
    async with watching("127.0.0.1") as watcher:
        yield watcher


@cache
def shared_tls_context() -> ssl.SSLContext:
    # Loading the CA bundle is most of a client's start-up cost; one context serves every test.
    return ssl.create_default_context()


@pytest.fixture
async def http() -> AsyncIterator[tuple[httpx.AsyncClient, list[httpx.Request]]]:
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    async with httpx.AsyncClient(
        verify=shared_tls_context(), trust_env=False, event_hooks={"request": [record]}
    ) as client:
        yield client, sent


DNS = {
    "metadata.google.internal": ["169.254.169.254"],
    "internal.example.test": ["10.1.2.3"],
    "loop.example.test": ["127.0.0.1"],
    "loop6.example.test": ["::1"],
    "mapped.example.test": ["::ffff:127.0.0.1"],
    "cgnat.example.test": ["100.100.100.100"],
    "ula.example.test": ["fd00::1"],
    "linklocal6.example.test": ["fe80::1"],
    "nat64-loop.example.test": ["64:ff9b::7f00:1"],
    "public-then-private.example.test": ["93.184.216.34", "127.0.0.1"],
    "private-then-public.example.test": ["10.0.0.5", "8.8.8.8"],
    "hooks.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
    "nat64-public.example.com": ["64:ff9b::808:808"],
}

# Judged without DNS: the URL itself is enough to refuse it (at submission and at delivery).
REFUSED_WITHOUT_DNS = [
    pytest.param("http://127.0.0.1:{port}/", id="loopback"),
    pytest.param("http://127.9.8.7:{port}/", id="loopback-range"),
    pytest.param("http://[::1]:{port}/", id="ipv6-loopback"),
    pytest.param("http://0.0.0.0:{port}/", id="unspecified"),
    pytest.param("http://0:{port}/", id="zero-short-form"),
    pytest.param("http://[::]:{port}/", id="ipv6-unspecified"),
    pytest.param("http://10.0.0.1:{port}/", id="private-10"),
    pytest.param("http://172.16.5.4:{port}/", id="private-172.16"),
    pytest.param("http://172.31.255.254:{port}/", id="private-172.31"),
    pytest.param("http://192.168.1.1:{port}/", id="private-192.168"),
    pytest.param("http://169.254.169.254:{port}/latest/meta-data/", id="metadata"),
    pytest.param("http://169.254.10.10:{port}/", id="link-local"),
    pytest.param("http://100.64.0.1:{port}/", id="cgnat-low"),
    pytest.param("http://100.127.255.254:{port}/", id="cgnat-high"),
    pytest.param("http://224.0.0.1:{port}/", id="multicast"),
    pytest.param("http://239.255.255.250:{port}/", id="multicast-ssdp"),
    pytest.param("http://255.255.255.255:{port}/", id="broadcast"),
    pytest.param("http://240.0.0.1:{port}/", id="reserved"),
    pytest.param("http://198.18.0.1:{port}/", id="benchmarking"),
    pytest.param("http://192.0.2.10:{port}/", id="documentation"),
    pytest.param("http://[fc00::1]:{port}/", id="ipv6-ula-fc"),
    pytest.param("http://[fd12:3456:789a::1]:{port}/", id="ipv6-ula-fd"),
    pytest.param("http://[fd00:ec2::254]:{port}/", id="ipv6-metadata"),
    pytest.param("http://[fe80::1]:{port}/", id="ipv6-link-local"),
    pytest.param("http://[fec0::1]:{port}/", id="ipv6-site-local"),
    pytest.param("http://[ff02::1]:{port}/", id="ipv6-multicast"),
    pytest.param("http://[::ffff:127.0.0.1]:{port}/", id="ipv4-mapped-dotted"),
    pytest.param("http://[::ffff:7f00:1]:{port}/", id="ipv4-mapped-hex"),
    pytest.param("http://[::ffff:a9fe:a9fe]:{port}/", id="ipv4-mapped-metadata"),
    pytest.param("http://[64:ff9b::7f00:1]:{port}/", id="nat64-loopback"),
    pytest.param("http://[64:ff9b::a00:1]:{port}/", id="nat64-private"),
    pytest.param("http://[2002:7f00:1::]:{port}/", id="6to4-loopback"),
    pytest.param("http://[::127.0.0.1]:{port}/", id="ipv4-compatible"),
    pytest.param("http://2130706433:{port}/", id="decimal"),
    pytest.param("http://0x7f000001:{port}/", id="hex"),
    pytest.param("http://0x7f.0.0.1:{port}/", id="hex-dotted"),
    pytest.param("http://0177.0.0.1:{port}/", id="octal"),
    pytest.param("http://127.1:{port}/", id="short"),
    pytest.param("http://0177.1:{port}/", id="octal-short"),
    pytest.param("http://0X7F.0.1:{port}/", id="hex-upper-short"),
    pytest.param("http://127.0.0.1.:{port}/", id="trailing-dot"),
    pytest.param("http://3232235777:{port}/", id="decimal-private"),
    pytest.param("http://0xa9fea9fe:{port}/", id="hex-metadata"),
    pytest.param("http://localhost:{port}/", id="localhost"),
    pytest.param("http://API.LocalHost:{port}/", id="localhost-subdomain"),
    pytest.param("http://example.com@127.0.0.1:{port}/", id="userinfo-host-trick"),
    pytest.param("http://user:pass@example.com:{port}/", id="userinfo"),
    pytest.param("http://127.0.0.1:{port}\\@example.com/", id="backslash-trick"),
    pytest.param("http://127.0.0.1:{port}\t/", id="tab"),
    pytest.param("http://%31%32%37.0.0.1:{port}/", id="percent-encoded-host"),
    pytest.param("http://[::1%25lo]:{port}/", id="ipv6-zone"),
    pytest.param("http://0x7f.0.0.1.0:{port}/", id="five-part-ipv4"),
    pytest.param("http://256.0.0.1:{port}/", id="ipv4-octet-too-big"),
    pytest.param("http://0x100000000:{port}/", id="ipv4-overflow"),
    pytest.param("http://exämple.com:{port}/", id="non-ascii"),
    pytest.param("file:///etc/passwd", id="file"),
    pytest.param("gopher://127.0.0.1:{port}/_SET", id="gopher"),
    pytest.param("ftp://example.com:{port}/", id="ftp"),
    pytest.param("data:text/plain,hello", id="data"),
    pytest.param("javascript:alert(1)", id="javascript"),
    pytest.param("//127.0.0.1:{port}/", id="scheme-relative"),
    pytest.param("http:127.0.0.1:{port}/", id="no-slashes"),
    pytest.param("http:///hook", id="missing-host"),
    pytest.param("http://:{port}/", id="empty-host"),
    pytest.param("http://example.com:0/", id="port-zero"),
    pytest.param("http://example.com:65536/", id="port-too-big"),
    pytest.param("http://example.com:-1/", id="port-negative"),
    pytest.param("http://example.com:80a/", id="port-not-number"),
    pytest.param("http://example.com/" + "a" * 2040, id="too-long"),
]

# Only DNS reveals these; submission accepts them, delivery must refuse them.
REFUSED_AFTER_DNS = [
    pytest.param("http://metadata.google.internal:{port}/computeMetadata/v1/", id="metadata-name"),
    pytest.param("http://internal.example.test:{port}/", id="name-to-private"),
    pytest.param("http://loop.example.test:{port}/", id="name-to-loopback"),
    pytest.param("http://loop6.example.test:{port}/", id="name-to-ipv6-loopback"),
    pytest.param("http://mapped.example.test:{port}/", id="name-to-mapped-loopback"),
    pytest.param("http://cgnat.example.test:{port}/", id="name-to-cgnat"),
    pytest.param("http://ula.example.test:{port}/", id="name-to-ula"),
    pytest.param("http://linklocal6.example.test:{port}/", id="name-to-ipv6-link-local"),
    pytest.param("http://nat64-loop.example.test:{port}/", id="name-to-nat64-loopback"),
    pytest.param("http://public-then-private.example.test:{port}/", id="one-public-one-private"),
    pytest.param("https://private-then-public.example.test:{port}/", id="one-private-one-public"),
]


@pytest.mark.parametrize("template", REFUSED_WITHOUT_DNS + REFUSED_AFTER_DNS)
async def test_refused_callbacks_never_open_a_connection(
    template: str, sentinel: ConnectionSentinel, http: tuple[httpx.AsyncClient, list[httpx.Request]]
) -> None:
    client, sent = http
    outcome = await guarded_deliver(
        client, template.format(port=sentinel.port), [], b"{}", {}, timeout_s=2.0, resolver=FakeResolver(DNS)
    )

    assert outcome.kind == "refused", outcome
    assert not outcome.delivered
    assert sent == []
    assert sentinel.connections == 0


@pytest.mark.parametrize("template", REFUSED_WITHOUT_DNS)
def test_submission_refuses_what_the_url_alone_gives_away(template: str) -> None:
    with pytest.raises(URLRefused):
        check_without_dns(template.format(port=8080), [])


@pytest.mark.parametrize("template", REFUSED_AFTER_DNS)
def test_submission_leaves_names_to_the_delivery_time_check(template: str) -> None:
    # No DNS at submission: the answer then proves nothing about the answer at delivery.
    check_without_dns(template.format(port=8080), [])


async def test_a_name_that_does_not_resolve_fails_without_a_connection(
    sentinel: ConnectionSentinel, http: tuple[httpx.AsyncClient, list[httpx.Request]]
) -> None:
    client, sent = http
    url = f"http://nowhere.example.test:{sentinel.port}/"

    outcome = await guarded_deliver(client, url, [], b"{}", {}, timeout_s=2.0, resolver=FakeResolver(DNS))

    assert outcome.kind == "dns"
    assert "nowhere.example.test" in outcome.reason
    assert sent == []
    assert sentinel.connections == 0


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://169.254.169.254/", "metadata"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://192.168.0.10/", "private"),
        ("http://[fd00::1]/", "unique local"),
        ("http://[64:ff9b::7f00:1]/", "IPv6 form of 127.0.0.1"),
        ("http://0x7f.1/", "127.0.0.1, which is a loopback address"),
        ("http://user:pw@example.com/", "user credentials"),
        ("ftp://example.com/", "http or https, not 'ftp'"),
        ("http:///x", "needs a host"),
        ("http://example.com:99999/", "port must be a number from 1 to 65535"),
    ],
)
def test_refusals_say_why(url: str, words: str) -> None:
    with pytest.raises(URLRefused, match=words):
        check_without_dns(url, [])


async def test_refusal_for_a_name_names_the_host_and_the_address() -> None:
    url = parse_guarded_url("http://metadata.google.internal/computeMetadata/v1/")

    with pytest.raises(URLRefused) as refused:
        await resolve_guarded_url(url, [], FakeResolver(DNS))

    assert "'metadata.google.internal' resolves to 169.254.169.254" in str(refused.value)
    assert "the cloud metadata address" in str(refused.value)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1.258", "10.1.1.2"),
        ("0x8.0x8.0x8.0x8", "8.8.8.8"),
        ("134744072", "8.8.8.8"),
        ("8.8.8.8.", "8.8.8.8"),
        ("[::FFFF:7F00:1]", "::ffff:7f00:1"),
    ],
)
def test_ipv4_spellings_are_judged_as_the_address_they_reach(host: str, address: str) -> None:
    parsed = parse_guarded_url(f"http://{host}/hook")

    assert parsed.ip == ipaddress.ip_address(address)


def test_a_parsed_url_keeps_path_and_query_and_drops_the_fragment() -> None:
    parsed = parse_guarded_url("HTTPS://Hooks.Example.COM.:8443/a%20b/c?task=1&x=%2F#frag")

    assert (parsed.scheme, parsed.host, parsed.port) == ("https", "hooks.example.com", 8443)
    assert parsed.target == "/a%20b/c?task=1&x=%2F"
    assert parsed.host_header == "hooks.example.com:8443"
    assert parse_guarded_url("http://[2001:db8::1]:80?x").host_header == "[2001:db8::1]"
    assert parse_guarded_url("http://[2001:db8::1]:80?x").target == "/?x"


@pytest.mark.parametrize(
    ("url", "connect_to"),
    [
        ("http://8.8.8.8/hook", "8.8.8.8"),
        ("https://1.1.1.1:8443/hook", "1.1.1.1"),
        ("https://[2606:4700:4700::1111]/hook", "2606:4700:4700::1111"),
        ("http://[::ffff:8.8.8.8]/hook", "8.8.8.8"),
        ("http://134744072/hook", "8.8.8.8"),
        ("https://hooks.example.com/hook", "93.184.216.34"),
        ("https://nat64-public.example.com/hook", "64:ff9b::808:808"),
    ],
)
async def test_public_destinations_pass_and_are_resolved_once(url: str, connect_to: str) -> None:
    resolver = FakeResolver(DNS)

    check_without_dns(url, [])
    resolved = await resolve_guarded_url(parse_guarded_url(url), [], resolver)

    assert resolved.ip == ipaddress.ip_address(connect_to)
    assert len(resolver.lookups) <= 1


async def test_allow_listed_loopback_is_reachable_and_nothing_else_opens(
    monkeypatch: pytest.MonkeyPatch, sentinel: ConnectionSentinel, http: tuple[httpx.AsyncClient, list[httpx.Request]]
) -> None:
    monkeypatch.setenv("GATEWAY_CALLBACK_ALLOW_NETWORKS", "127.0.0.0/8")
    allowed = Settings(_env_file=None).callback_networks
    client, _ = http

    for spelling in ("127.0.0.1", "0x7f.1", "2130706433", "[::ffff:127.0.0.1]", "localhost"):
        check_without_dns(f"http://{spelling}:{sentinel.port}/", allowed)
    # The sentinel closes without answering, so the attempt fails, but it did connect: the
    # allow-list opened loopback, and the sentinel is proven to see connections.
    outcome = await guarded_deliver(
        client, f"http://loop.example.test:{sentinel.port}/", allowed, b"{}", {}, 2.0, FakeResolver(DNS)
    )
    assert outcome.kind in {"transport", "connect"}
    assert sentinel.connections == 1

    for still_refused in ("http://[::1]/", "http://10.0.0.1/", "http://169.254.169.254/", "http://[fe80::1]/"):
        with pytest.raises(URLRefused):
            check_without_dns(still_refused, allowed)
