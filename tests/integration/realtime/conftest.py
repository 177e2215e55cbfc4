"""Fixtures for websocket tests: a user with a token and a session, and communicator factories.

Everything runs against the real channel layer of settings.CHANNEL_LAYERS (channels-redis on the test
run's Redis key prefix) and the real database; nothing is mocked.
"""
from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings

from config.asgi import application

GOOD_ORIGIN = b"http://127.0.0.1:8000"
EVIL_ORIGIN = b"https://evil.example.com"


class Watcher:
    """Credentials of one user for opening sockets."""

    def __init__(self, user: Any) -> None:
        from django.test import Client
        from rest_framework.authtoken.models import Token

        self.user = user
        self.token = Token.objects.create(user=user).key
        client = Client()
        client.force_login(user)
        self.session_key = client.cookies[settings.SESSION_COOKIE_NAME].value

    def token_socket(self, path: str, *, origin: bytes | None = None) -> WebsocketCommunicator:
        headers = [(b"origin", origin)] if origin else []
        separator = "&" if "?" in path else "?"
        return WebsocketCommunicator(application, f"{path}{separator}token={self.token}", headers=headers)

    def session_socket(self, path: str, *, origin: bytes | None = GOOD_ORIGIN,
                       host: bytes = b"127.0.0.1:8000") -> WebsocketCommunicator:
        # A browser always sends Host; the site's own origin is read from it (realtime/origin.py).
        headers = [(b"host", host), (b"cookie", f"{settings.SESSION_COOKIE_NAME}={self.session_key}".encode())]
        if origin:
            headers.append((b"origin", origin))
        return WebsocketCommunicator(application, path, headers=headers)


@pytest.fixture
def watcher(user) -> Watcher:
    return Watcher(user)


@pytest.fixture
def other_watcher(other_user) -> Watcher:
    return Watcher(other_user)
