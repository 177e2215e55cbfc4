"""DATABASES from the environment: PostgreSQL (DATABASE_URL) or development's SQLite, an optional psycopg
pool, an optional read replica, and what a transaction-mode PgBouncer in front requires."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import dj_database_url

from .env import env_bool, env_int, env_str


def databases(url: str, *, replica_url: str | None, pgbouncer: bool, var_dir: Path) -> dict[str, dict[str, Any]]:
    """The DATABASES setting: `default` from `url`, and `replica` when `replica_url` is set."""
    result = {"default": _primary(url, var_dir=var_dir)}
    if replica_url:
        result["replica"] = _replica(replica_url, primary=result["default"])
    for database in result.values():
        # A transaction-mode PgBouncer (settings.DATABASE_PGBOUNCER says why): no server-side cursors.
        database["DISABLE_SERVER_SIDE_CURSORS"] = pgbouncer
    return result


def _primary(url: str, *, var_dir: Path) -> dict[str, Any]:
    database = dj_database_url.parse(url, conn_max_age=0)
    if database["ENGINE"] == "django.db.backends.postgresql":
        # Persistent connections under ASGI pile up (one per thread); a psycopg pool is opt-in instead.
        if env_bool("DATABASE_POOL", False):
            database.setdefault("OPTIONS", {})["pool"] = {
                "min_size": env_int("DATABASE_POOL_MIN", 2),
                "max_size": env_int("DATABASE_POOL_MAX", 20),
                "timeout": 10,
            }
        # ChannelsLiveServerTestCase and pytest-django need the test database named explicitly.
        database["TEST"] = {"NAME": env_str("DATABASE_TEST_NAME", f"test_{database['NAME']}")}
    else:
        database["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
        database["TEST"] = {"NAME": env_str("DATABASE_TEST_NAME", str(var_dir / "test_db.sqlite3"))}
    return database


def _replica(url: str, *, primary: dict[str, Any]) -> dict[str, Any]:
    database = dj_database_url.parse(url, conn_max_age=0)
    database["OPTIONS"] = {key: value for key, value in primary.get("OPTIONS", {}).items()}
    database["TEST"] = {"MIRROR": "default"}  # tests read the primary's test database through it
    return database
