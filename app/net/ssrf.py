"""The SSRF guard for URLs the gateway did not choose: parse strictly, resolve once, refuse
anything not public.

Callback URLs come from callers and image URLs from upstreams; neither may reach the gateway's own
network: loopback, private ranges, link-local (cloud metadata at 169.254.169.254), carrier-grade
NAT, multicast and their IPv6 equivalents, including IPv4 addresses smuggled inside IPv6 forms.
Operators open specific ranges with `GATEWAY_CALLBACK_ALLOW_NETWORKS` (for both uses).

The guard judges the address a connection will really reach: IPv4 literals are read the way
browsers and `inet_aton` read them (`0x7f.1` is 127.0.0.1), the host is resolved exactly once,
and the connection goes to the address that was checked (app/net/pinned.py), so a DNS answer
that changes between the check and the connection (DNS rebinding) cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_HOST_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?$")
# Anything a browser silently strips or rewrites (tabs, newlines, backslashes) is a classic way to
# make two URL parsers disagree about the host; refusing it leaves nothing to disagree about.
_FORBIDDEN_CHARACTER = re.compile(r"[\x00-\x20\x7f\\]")


class URLRefused(Exception):
    """The URL may not be used; the message says why, in words a caller can act on."""


class HostUnresolvable(URLRefused):
    """The host has no address right now (DNS failure); unlike a refusal, this may pass later."""


@dataclass(frozen=True)
class GuardedURL:
    """A syntactically valid http(s) URL, split into the parts a connection needs."""

    scheme: str
    # Lower-case host name without a trailing dot, or the normalised IP literal (no brackets).
    host: str
    port: int
    # Path and query exactly as given ("/" when empty); the fragment never goes on the wire.
    target: str
    # Set when the host is an IP literal in any spelling, so no DNS lookup is involved.
    ip: IPAddress | None

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if isinstance(self.ip, ipaddress.IPv6Address) else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


@dataclass(frozen=True)
class ResolvedURL:
    """A URL together with the checked address that a connection must go to."""

    url: GuardedURL
    ip: IPAddress
    # Every address the host resolved to; all of them passed the check.
    addresses: tuple[IPAddress, ...]


class Resolver(Protocol):
    """Turns a host name into IP address strings; tests substitute a fake DNS."""

    async def __call__(self, host: str, port: int) -> list[str]: ...


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_guarded_url(url: str) -> GuardedURL:
    """Check a URL's syntax without any DNS; raises `URLRefused` naming the problem."""
    if len(url) > MAX_URL_LENGTH:
        raise URLRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if not url.isascii():
        raise URLRefused("the URL must be ASCII; percent-encode other characters and use xn-- host names")
    if _FORBIDDEN_CHARACTER.search(url):
        raise URLRefused("the URL must not contain spaces, control characters or backslashes")
    scheme_match = _SCHEME.match(url)
    if scheme_match is None:
        raise URLRefused("the URL must be an absolute http:// or https:// URL")
    scheme = scheme_match.group(1).lower()
    if scheme not in DEFAULT_PORTS:
        raise URLRefused(f"the URL must use http or https, not {scheme!r}")
    rest = url[scheme_match.end() :]
    if not rest.startswith("//"):
        raise URLRefused("the URL must be an absolute http:// or https:// URL")
    rest = rest[2:]
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, target = rest[:authority_end], rest[authority_end:].split("#", 1)[0]
    if "@" in authority:
        raise URLRefused("the URL must not contain user credentials (user:pass@)")
    raw_host, port = _split_host_port(authority, DEFAULT_PORTS[scheme])
    host, ip = _parse_host(raw_host)
    if not target.startswith("/"):
        target = "/" + target
    return GuardedURL(scheme=scheme, host=host, port=port, target=target, ip=ip)


def check_without_dns(url: str, allow_networks: Networks) -> None:
    """The checks possible without DNS (a task's submission): syntax, and the address if it is literal."""
    parsed = parse_guarded_url(url)
    for address in _addresses_without_dns(parsed):
        check_address(address, allow_networks, host=parsed.host)


async def resolve_guarded_url(
    url: GuardedURL, allow_networks: Networks, resolver: Resolver | None = None
) -> ResolvedURL:
    """Resolve the host once and check every address; the first one is where the connection goes."""
    addresses = _addresses_without_dns(url)
    if not addresses:
        try:
            answers = await (resolver or system_resolver)(url.host, url.port)
        except (OSError, UnicodeError) as exc:
            raise HostUnresolvable(f"host {url.host!r} could not be resolved ({exc})") from None
        addresses = [_parse_answer(url.host, answer) for answer in answers]
        if not addresses:
            raise HostUnresolvable(f"host {url.host!r} has no addresses")
    checked = tuple(check_address(address, allow_networks, host=url.host) for address in addresses)
    return ResolvedURL(url=url, ip=checked[0], addresses=checked)


def check_address(address: IPAddress, allow_networks: Networks, *, host: str = "") -> IPAddress:
    """Return the address to connect to, or raise `URLRefused` when it is not public.

    An IPv4-mapped IPv6 address (::ffff:a.b.c.d) reaches the IPv4 address, so it is judged, and
    connected to, as that IPv4 address.
    """
    effective = _unmapped(address)
    if any(a in net for net in allow_networks for a in {address, effective} if a.version == net.version):
        return effective
    reason = non_public_reason(effective)
    if reason is None:
        return effective
    subject = f"host {host!r} resolves to {address}" if host and host != str(address) else str(address)
    raise URLRefused(
        f"{subject}, which is {reason}; the gateway only connects to public addresses "
        "unless the operator allows the network in GATEWAY_CALLBACK_ALLOW_NETWORKS"
    )


def non_public_reason(address: IPAddress) -> str | None:
    """Why an address is not a public destination, or None when it is one."""
    if isinstance(address, ipaddress.IPv4Address):
        table: Sequence[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = _IPV4_RANGES
    else:
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = non_public_reason(embedded)
            return None if inner is None else f"an IPv6 form of {embedded}, {inner}"
        table = _IPV6_RANGES
    for network, reason in table:
        if address in network:
            return reason
    if not address.is_global:
        return "not a publicly routable address"
    return None


def _v4(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(cidr)


def _v6(cidr: str) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network(cidr)


# Listed explicitly rather than trusting `is_global` alone, whose answers have changed between
# Python releases; the first match names the reason.
_IPV4_RANGES: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_v4("0.0.0.0/8"), "an unspecified ('this network') address"),
    (_v4("127.0.0.0/8"), "a loopback address"),
    (_v4("10.0.0.0/8"), "a private address"),
    (_v4("172.16.0.0/12"), "a private address"),
    (_v4("192.168.0.0/16"), "a private address"),
    (_v4("169.254.169.254/32"), "the cloud metadata address"),
    (_v4("169.254.0.0/16"), "a link-local address"),
    (_v4("100.64.0.0/10"), "a carrier-grade NAT (shared) address"),
    (_v4("192.0.0.0/24"), "an IETF protocol address"),
    (_v4("192.0.2.0/24"), "a documentation address"),
    (_v4("198.51.100.0/24"), "a documentation address"),
    (_v4("203.0.113.0/24"), "a documentation address"),
    (_v4("198.18.0.0/15"), "a benchmarking address"),
    (_v4("192.88.99.0/24"), "a deprecated 6to4 relay address"),
    (_v4("224.0.0.0/4"), "a multicast address"),
    (_v4("255.255.255.255/32"), "the broadcast address"),
    (_v4("240.0.0.0/4"), "a reserved address"),
)

_IPV6_RANGES: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_v6("::/128"), "the unspecified address"),
    (_v6("::1/128"), "a loopback address"),
    (_v6("::/96"), "a deprecated IPv4-compatible address"),
    (_v6("fd00:ec2::254/128"), "the cloud metadata address"),
    (_v6("fc00::/7"), "a unique local (private) address"),
    (_v6("fe80::/10"), "a link-local address"),
    (_v6("fec0::/10"), "a site-local address"),
    (_v6("ff00::/8"), "a multicast address"),
    (_v6("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (_v6("100::/64"), "a discard-only address"),
    (_v6("2001:db8::/32"), "a documentation address"),
    (_v6("2001::/23"), "an IETF protocol address"),
    (_v6("::/8"), "a reserved address"),
)

_NAT64 = _v6("64:ff9b::/96")
_SIX_TO_FOUR = _v6("2002::/16")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that mapped (::ffff:0:0/96), NAT64 (64:ff9b::/96) or 6to4 (2002::/16) forms reach."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF)
    return None


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _addresses_without_dns(url: GuardedURL) -> list[IPAddress]:
    if url.ip is not None:
        return [url.ip]
    # RFC 6761: localhost names are always loopback, whatever a resolver says.
    if url.host == "localhost" or url.host.endswith(".localhost"):
        return [ipaddress.IPv4Address("127.0.0.1")]
    return []


def _parse_answer(host: str, answer: str) -> IPAddress:
    try:
        return ipaddress.ip_address(answer)
    except ValueError:
        raise HostUnresolvable(f"host {host!r} resolved to something that is not an address") from None


def _split_host_port(authority: str, default_port: int) -> tuple[str, int]:
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise URLRefused("the URL has an unterminated IPv6 address")
        host, after = authority[: close + 1], authority[close + 1 :]
        if after and not after.startswith(":"):
            raise URLRefused("the URL has text after its IPv6 address")
        port_text = after[1:] if after else None
    elif authority.count(":") > 1:
        raise URLRefused("the URL has an invalid host (IPv6 addresses need [brackets])")
    else:
        host, _, port_text_or_empty = authority.partition(":")
        port_text = port_text_or_empty if ":" in authority else None
    if port_text is None:
        return host, default_port
    if not (port_text.isdigit() and len(port_text) <= 5 and 1 <= int(port_text) <= 65535):
        raise URLRefused("the URL's port must be a number from 1 to 65535")
    return host, int(port_text)


def _parse_host(raw: str) -> tuple[str, IPAddress | None]:
    if not raw:
        raise URLRefused("the URL needs a host")
    if raw.startswith("["):
        inner = raw[1:-1]
        if "%" in inner:
            raise URLRefused("the URL must not use an IPv6 zone identifier")
        try:
            ipv6 = ipaddress.IPv6Address(inner)
        except ValueError:
            raise URLRefused("the URL has an invalid IPv6 address") from None
        return str(ipv6), ipv6
    host = raw.lower()
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    if _looks_like_ipv4(labels[-1]):
        ipv4 = _parse_ipv4_number(labels)
        return str(ipv4), ipv4
    if len(".".join(labels)) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise URLRefused("the URL has an invalid host name")
    return ".".join(labels), None


def _looks_like_ipv4(last_label: str) -> bool:
    # WHATWG URL rule: a host whose last label is a number is an IPv4 address, never a name.
    return last_label.isdigit() or re.fullmatch(r"0x[0-9a-f]*", last_label) is not None


def _parse_ipv4_number(labels: list[str]) -> ipaddress.IPv4Address:
    """Read an IPv4 address the way inet_aton and browsers do: 1–4 parts, each decimal, 0x-hex or 0-octal,
    the last part filling the remaining bytes (so 127.1, 2130706433 and 0x7f.0.0.1 are all 127.0.0.1)."""
    invalid = URLRefused(f"the URL's host {'.'.join(labels)!r} is not a valid IPv4 address")
    if len(labels) > 4:
        raise invalid
    numbers = [_parse_ipv4_part(label, invalid) for label in labels]
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        raise invalid
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _parse_ipv4_part(label: str, invalid: URLRefused) -> int:
    if label.startswith("0x"):
        digits, base = label[2:], 16
    elif len(label) > 1 and label.startswith("0"):
        digits, base = label[1:], 8
    else:
        digits, base = label, 10
    if digits == "" and base == 16:
        return 0
    # int() alone would also take "+1", "1_0" and other spellings that no resolver reads as a number.
    if len(digits) > 32 or not _IPV4_DIGITS[base].fullmatch(digits):
        raise invalid
    return int(digits, base)


_IPV4_DIGITS = {10: re.compile(r"[0-9]+"), 8: re.compile(r"[0-7]+"), 16: re.compile(r"[0-9a-f]+")}
