"""Whether an open SSE stream's client may still watch: re-checked every SSE_REAUTH_S while it is open.

A stream can outlive the credentials it was opened with (a deleted API token, a logged-out session, a
deactivated user); like the websockets, it ends once they are gone instead of running until the job ends.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.request import Request


def reauth_s() -> float:
    return float(getattr(settings, "SSE_REAUTH_S", 60.0))


def _still_allowed(*, user_id: Any, token_key: str | None, session_key: str | None) -> bool:
    if not get_user_model().objects.filter(pk=user_id, is_active=True).exists():
        return False
    if token_key is not None:
        from rest_framework.authtoken.models import Token

        return Token.objects.filter(key=token_key, user_id=user_id).exists()
    if session_key is not None:
        from importlib import import_module

        store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        return str(store.get("_auth_user_id")) == str(user_id)
    return False


def access_check(request: Request) -> Callable[[], Awaitable[bool]]:
    """An awaitable re-check of the credentials `request` was authenticated with."""
    token = getattr(request, "auth", None)
    token_key = getattr(token, "key", None)
    session = getattr(request._request, "session", None)
    session_key = None if token_key is not None or session is None else session.session_key
    check = database_sync_to_async(_still_allowed)

    async def allowed() -> bool:
        return await check(user_id=request.user.pk, token_key=token_key, session_key=session_key)

    return allowed
