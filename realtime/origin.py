"""The Origin check of cookie-authenticated websockets: the full origin (scheme, host, port) must be the
site's own or one of `DJANGO_CSRF_TRUSTED_ORIGINS`, as Django's CSRF check requires of a form post.

channels' AllowedHostsOriginValidator compares the host only, so `http://example.com:8080` (or any scheme)
passed for a site served at `https://example.com`.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(value: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, None when it is not an http(s) origin."""
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def own_origin(scope: dict[str, Any]) -> tuple[str, str, int] | None:
    """The site's origin as this request reached it: the http form of the socket's scheme and its Host."""
    host = _header(scope, b"host")
    if not host:
        return None
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    return _origin(f"{scheme}://{host}")


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether the socket's Origin is the site's own origin or a trusted one (no Origin: refused)."""
    origin = _origin(_header(scope, b"origin") or "")
    if origin is None:
        return False
    if origin == own_origin(scope):
        return True
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        scheme, _, host = trusted.lower().partition("://")
        if host.startswith("*."):  # Django's form for every subdomain: https://*.example.com
            wanted = _origin(f"{scheme}://{host[2:]}")
            if wanted and origin[0] == wanted[0] and origin[2] == wanted[2] and origin[1].endswith("." + wanted[1]):
                return True
        elif origin == _origin(trusted):
            return True
    return False


class FullOriginValidator:
    """ASGI middleware: a websocket whose Origin is not allowed is refused before accepting (HTTP 403)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("type") == "websocket" and not origin_allowed(scope):
            from channels.security.websocket import WebsocketDenier

            return await WebsocketDenier()(scope, receive, send)
        return await self.inner(scope, receive, send)
