"""The Django ASGI handler patch: applied on the tested Django, Django's own handler elsewhere."""
from __future__ import annotations

from django.core.handlers.asgi import ASGIHandler

from patches import django_asgi
from tests.unit.patches.test_versions import covers


def test_django_asgi__tested_versions_cover_the_pinned_django() -> None:
    assert covers(django_asgi.TESTED, "Django")


def test_django_asgi__applied_on_the_tested_django() -> None:
    assert django_asgi.handler_class() is django_asgi.SyncChainASGIHandler


def test_django_asgi__outside_the_tested_django_the_stock_handler_serves(installed, caplog) -> None:
    installed(Django="6.0.1")
    assert django_asgi.handler_class() is ASGIHandler
    assert "django_asgi not applied" in caplog.text and "Django 6.0.1 is outside" in caplog.text
