"""The SSRF guard for webhook targets.

A webhook URL is chosen by a caller, and memmesh's server then connects to it from inside
the network it runs in. Without a guard, a key holder could make the server call its own
admin ports, a database on the private network, or the cloud metadata service (which
hands out credentials). So, unless ``subscriptions.allow_loopback_webhooks`` is set:

* only ``http`` and ``https`` URLs are accepted, without user info;
* the host is resolved and **every** address it resolves to must be a public (global)
  address: loopback, private, link-local, shared (CGNAT), multicast, reserved and
  unspecified addresses are refused, as are IPv4 addresses wrapped in IPv6 (mapped,
  IPv4-compatible, NAT64 and 6to4 addresses are judged by the IPv4 address inside: on a
  network with NAT64 or 6to4 a call to them reaches that address) and the deprecated
  site-local range;
* the URL holds no whitespace or control characters (they cannot be sent, and a line break
  is an attempt to smuggle a header);
* the connection goes to the address that was checked (the URL is rewritten to it, with
  the original ``Host`` header and TLS server name), so a second DNS answer that points
  inside (DNS rebinding) is never used;
* redirects are not followed (a 3xx answer is a failed delivery), so a public target
  cannot bounce the request inside either.

The cloud metadata addresses stay refused even when internal targets are allowed.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from memmesh.errors import InvalidInputError, WebhookRefusedError

MAX_URL_CHARS = 2048
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2", "169.254.170.23", "fd00:ec2::23", "168.63.129.16")
)
"""Cloud metadata and credential services, never a webhook target: instance metadata
(AWS/GCP/Azure/OpenStack/Oracle, AWS over IPv6, Alibaba), the AWS container credentials
endpoint (ECS/Fargate), the EKS Pod Identity agent (IPv4 and IPv6) and Azure's WireServer."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
__all__ = ["METADATA_ADDRESSES", "Target", "WebhookRefusedError", "check_target", "parse_url", "refusal", "resolve"]

NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
"""The well-known and the local-use NAT64 prefixes (RFC 6052, RFC 8215): the last 32 bits are
the IPv4 address a NAT64 gateway forwards the connection to."""
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
SITE_LOCAL = ipaddress.ip_network("fec0::/10")


@dataclass(frozen=True)
class Target:
    """A checked webhook target: where to connect and what to call the host."""

    url: str
    """The URL as given."""
    scheme: str
    hostname: str
    port: int
    address: str
    """The checked address the connection must go to."""


def parse_url(url: object) -> tuple[str, str, int]:
    """``(scheme, hostname, port)`` of a webhook URL, or a clear error for anything else."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidInputError("url is required: the http(s) address that receives the webhook")
    text = url.strip()
    if len(text) > MAX_URL_CHARS:
        raise InvalidInputError(f"url is {len(text)} characters; at most {MAX_URL_CHARS}")
    bad = next((c for c in text if ord(c) < 0x21 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF), None)
    if bad is not None:
        raise InvalidInputError(
            f"url holds a space or control character (\\u{ord(bad):04x}) at position {text.index(bad)}: percent-encode it (a space is %20)"
        )
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidInputError(f"url {text!r} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidInputError(f"url must be an http:// or https:// URL (got scheme {parts.scheme or 'none'!r} in {text!r})")
    if not parts.hostname:
        raise InvalidInputError(f"url {text!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInputError("url must not hold a user name or password: the webhook is authenticated by its HMAC signature")
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries to (mapped, IPv4-compatible, NAT64, 6to4),
    or None. Python calls most of these "global", but a call to one reaches the IPv4 address
    inside on a network that translates them, so that is the address to judge."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if (address in IPV4_COMPATIBLE and int(address) > 1) or any(address in prefix for prefix in NAT64_PREFIXES):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress, *, allow_internal: bool) -> str | None:
    """Why ``address`` may not be a webhook target (None: it may)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            why = refusal(inner, allow_internal=allow_internal)
            return f"{why} ({inner}) wrapped in IPv6" if why is not None else None
        if address in SITE_LOCAL and not allow_internal:
            return "a site-local (private) address"
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified or address.is_multicast:
        return "an unspecified or multicast address"
    if address.is_global:
        return None
    if allow_internal:
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    return "a non-public address"


def resolve(hostname: str, port: int) -> list[IPAddress]:
    """Every address ``hostname`` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(hostname.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise WebhookRefusedError(f"webhook host {hostname!r} does not resolve ({exc}); check the URL") from None
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise WebhookRefusedError(f"webhook host {hostname!r} resolves to no address; check the URL")
    return found


def check_target(url: object, *, allow_internal: bool) -> Target:
    """The checked target of ``url``: every address it resolves to must be allowed, and the
    first one is the address to connect to."""
    scheme, hostname, port = parse_url(url)
    addresses = resolve(hostname, port)
    for address in addresses:
        why = refusal(address, allow_internal=allow_internal)
        if why is not None:
            hint = (
                ""
                if why.startswith(("a cloud metadata address", "an unspecified or multicast address"))
                else "; to deliver to your own network set subscriptions.allow_loopback_webhooks = true"
            )
            raise WebhookRefusedError(
                f"webhook target {hostname!r} resolves to {address}, {why}: refused to guard against server-side request forgery{hint}",
                details={"host": hostname, "address": str(address)},
            )
    return Target(url=str(url).strip(), scheme=scheme, hostname=hostname, port=port, address=str(addresses[0]))
