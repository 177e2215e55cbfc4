"""Websocket authentication: `?token=<key>` (DRF token) or the session cookie.

A token client is a script or another front end: it needs no Origin. A cookie is sent by the browser to
any page that opens a socket to us, so a session-authenticated connection must come from the site's own or a
trusted origin (realtime/origin.py: scheme, host and port); otherwise another site could ride a user's cookie. Connections with
neither reach the consumer as anonymous and are closed with 4401.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser

from .origin import FullOriginValidator

TOKEN_PARAM = "token"


def token_from_scope(scope: dict[str, Any]) -> str | None:
    """The token a client sent as `?token=` or as an `Authorization: Token <key>` header, else None."""
    query = scope.get("query_string", b"")
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    values = parse_qs(query, keep_blank_values=True).get(TOKEN_PARAM)
    if values:
        return values[0].strip()
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            if scheme.lower() == "token":
                return key.strip()
    return None


@database_sync_to_async
def user_for_token(key: str) -> Any:
    """The active user owning a DRF token, or AnonymousUser."""
    from rest_framework.authtoken.models import Token

    if not key or len(key) > 64:
        return AnonymousUser()
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    user = token.user
    # select_related on the one-to-one also caches the Token on the user (user.auth_token): a socket keeps
    # its user for its whole life, and the token row need not live with it (~1 KB per idle socket).
    user._state.fields_cache.pop("auth_token", None)
    return user


class TokenAuthMiddleware:
    """Sets scope["user"] from the token (AnonymousUser when it is unknown); no Origin check."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        key = token_from_scope(scope) or ""
        scope = dict(scope, user=await user_for_token(key), auth_method="token")
        return await self.inner(scope, receive, send)


class SessionOriginGuard:
    """Behind AuthMiddlewareStack: a session-authenticated connection must come from an allowed Origin."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.checked = FullOriginValidator(inner)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        user = scope.get("user")
        scope = dict(scope, auth_method="session")
        if user is not None and user.is_authenticated:
            # A bad Origin is refused before accept: the browser sees a bare HTTP 403.
            return await self.checked(scope, receive, send)
        return await self.inner(scope, receive, send)


class WebsocketAuthMiddleware:
    """Token auth when a token is given (even an empty or wrong one), else session auth + Origin check."""

    def __init__(self, inner: Any) -> None:
        self.token_app = TokenAuthMiddleware(inner)
        self.session_app = AuthMiddlewareStack(SessionOriginGuard(inner))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if token_from_scope(scope) is not None:
            return await self.token_app(scope, receive, send)
        return await self.session_app(scope, receive, send)
