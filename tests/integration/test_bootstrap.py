"""`make run`'s bootstrap prints the demo password only when it creates it."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def _bootstrap() -> str:
    out = StringIO()
    call_command("bootstrap", "--url", "http://127.0.0.1:8000/", stdout=out)
    return out.getvalue()


def test_bootstrap__prints_the_demo_password_only_when_it_creates_it(settings, tmp_path):
    # given an empty database and its own var folder
    settings.VAR_DIR = tmp_path
    # when make run starts twice
    first, second = _bootstrap(), _bootstrap()
    # then the first start prints the new password, the second only where it is kept
    password = (tmp_path / "demo-login.txt").read_text().split()[1]
    assert f"Demo login (staff): demo / {password}" in first
    assert password not in second and "demo-login.txt" in second
