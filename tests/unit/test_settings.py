"""Settings from the environment: production values pass `check --deploy`; insecure defaults need debug."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    base.update(env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True,
                          timeout=120)


def test_check_deploy__clean_with_production_values() -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", DJANGO_DEBUG="0",
                     DJANGO_SECRET_KEY=secrets.token_urlsafe(50), DJANGO_ALLOWED_HOSTS="jobs.example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_settings__hsts_preload_only_when_asked_for() -> None:
    production = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                  "DJANGO_ALLOWED_HOSTS": "jobs.example.com"}
    show = "from django.conf import settings; print(settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_PRELOAD)"
    assert _manage("shell", "--no-imports", "-c", show, **production).stdout.split() == ["31536000", "False"]
    assert _manage("shell", "--no-imports", "-c", show, DJANGO_SECURE_HSTS_PRELOAD="1", **production).stdout.split() == ["31536000", "True"]


def test_settings__debug_off_without_secret_key_refuses_to_start() -> None:
    result = _manage("check", DJANGO_DEBUG="0", DJANGO_ALLOWED_HOSTS="jobs.example.com")
    assert result.returncode != 0 and "DJANGO_SECRET_KEY must be set" in result.stderr


def test_redis_url__broker_and_channel_layer_use_separate_databases() -> None:
    from config.env import redis_db_of, redis_url_with_db

    assert redis_url_with_db("redis://h:6379/4", 5) == "redis://h:6379/5"
    assert redis_db_of("redis://h:6379/4") == 4 and redis_db_of("redis://h:6379") == 0
