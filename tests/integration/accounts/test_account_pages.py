"""/accounts/: login and logout always; password reset only when e-mail can be sent."""
from __future__ import annotations

import importlib

import pytest
from django.conf import settings as django_settings
from django.test import Client, override_settings
from django.urls import clear_url_caches

pytestmark = pytest.mark.django_db


@pytest.fixture
def reload_urls():
    """Rebuild the URLconf after a settings change (accounts.urls reads EMAIL_HOST when imported)."""
    import accounts.urls
    import config.urls

    original = django_settings.EMAIL_HOST

    def reload() -> None:
        importlib.reload(accounts.urls)
        importlib.reload(config.urls)
        clear_url_caches()

    yield reload
    with override_settings(EMAIL_HOST=original):  # the URLconf the other tests run with
        reload()


def test_accounts__no_password_reset_pages_without_email(settings, reload_urls):
    settings.EMAIL_HOST = ""
    reload_urls()
    client = Client()
    assert client.get("/accounts/login/").status_code == 200
    assert client.get("/accounts/password_reset/").status_code == 404
    assert client.post("/accounts/password_reset/", {"email": "someone@example.com"}).status_code == 404


def test_accounts__password_reset_pages_with_email(settings, reload_urls):
    settings.EMAIL_HOST = "smtp.example.com"
    reload_urls()
    assert Client().get("/accounts/password_reset/").status_code == 200
