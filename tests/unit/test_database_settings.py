"""Database settings from the environment: a transaction-mode PgBouncer in front, and a read replica."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHOW = ("import json; from django.conf import settings; print(json.dumps({alias: {"
        "'cursors_off': db['DISABLE_SERVER_SIDE_CURSORS'], 'name': db['NAME'], 'mirror': db.get('TEST', {}).get('MIRROR'),"
        "'options': sorted(db.get('OPTIONS', {}))} for alias, db in settings.DATABASES.items()}))")


def _databases(**env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DJANGO_"))}
    result = subprocess.run([sys.executable, "manage.py", "shell", "--no-imports", "-c", SHOW], cwd=ROOT,
                            env={**base, **env}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_database_settings__pgbouncer_turns_server_side_cursors_off_for_every_alias():
    databases = _databases(DATABASE_URL="postgres://app@pgbouncer:6432/jobs", DATABASE_PGBOUNCER="1",
                           DATABASE_REPLICA_URL="postgres://app@pgbouncer-replica:6432/jobs")

    assert databases["default"]["cursors_off"] is True and databases["replica"]["cursors_off"] is True


def test_database_settings__replica_alias_only_when_configured():
    assert set(_databases(DATABASE_URL="postgres://app@db:5432/jobs")) == {"default"}

    databases = _databases(DATABASE_URL="postgres://app@db:5432/jobs", DATABASE_POOL="1",
                           DATABASE_REPLICA_URL="postgres://app@replica:5432/jobs")
    assert databases["default"]["cursors_off"] is False  # no PgBouncer: Django's default
    assert databases["replica"] == {"cursors_off": False, "name": "jobs", "mirror": "default", "options": ["pool"]}
