"""Which webhook URLs may be called: http(s) to public addresses only (unless WEBHOOKS_ALLOW_PRIVATE).

Checked twice: when a job is created (a clear 400) and right before each attempt, on the addresses DNS
gives then; the sender connects to exactly the address checked here, so a name that re-resolves to a
private address between check and connect (DNS rebinding) gains nothing.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from .conf import webhook_settings

SCHEMES = {"http": 80, "https": 443}
# Cloud metadata services that are not caught by "not global" on every platform.
METADATA_ADDRESSES = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
                      ipaddress.ip_address("100.100.100.200")}


class UrlRefused(ValueError):
    """The URL is malformed, not http(s), or leads to a refused address; str() says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL (Host header, TLS server name)
    port: int
    path: str  # path and query, at least "/"
    address: str  # the checked IP address to connect to


def _parts(url: str) -> tuple[str, str, int, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"not a valid URL ({exc}).") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UrlRefused("must be an http or https URL.")
    if not parts.hostname:
        raise UrlRefused("has no host name.")
    if parts.username or parts.password:
        raise UrlRefused("may not contain a user name or password.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, parts.hostname, port or SCHEMES[scheme], path


def address_refusal(address: str) -> str | None:
    """Why an IP address may not be called, or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private or ip.is_unspecified or ip.is_reserved or ip.is_multicast or not ip.is_global:
        return "a private or reserved address"
    return None


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise LookupError(f"{host} does not resolve ({exc}).") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise LookupError(f"{host} does not resolve.")
    return addresses


def resolve_target(url: str) -> Target:
    """Parse `url`, resolve its host and check every address; UrlRefused or LookupError (DNS) otherwise."""
    scheme, host, port, path = _parts(url)
    addresses = _resolve(host, port)
    if not webhook_settings().allow_private:
        for address in addresses:
            reason = address_refusal(address)
            if reason is not None:
                raise UrlRefused(f"{host} resolves to {address}, {reason}; webhooks go to public addresses only.")
    return Target(scheme=scheme, host=host, port=port, path=path, address=addresses[0])


def check_webhook_url(url: str) -> None:
    """Create-time check: raises UrlRefused with the reason a user should read."""
    if len(url) > 2000:
        raise UrlRefused("is longer than 2000 characters.")
    try:
        resolve_target(url)
    except LookupError as exc:
        raise UrlRefused(str(exc)) from None
