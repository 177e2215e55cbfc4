"""`make test`: give this run its own Redis key prefix and test database, then run pytest.

Two runs sharing one Redis or PostgreSQL would otherwise run each other's tasks and drop each other's
database. Without REDIS_URL an embedded Redis is started; without DATABASE_URL SQLite is used.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from devtools.embedded_redis import ensure_redis_url

BASE_DIR = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    os.chdir(BASE_DIR)
    run_id = os.environ.setdefault("TEST_RUN_ID", uuid.uuid4().hex[:8])
    os.environ.setdefault("REDIS_KEY_PREFIX", f"test-{run_id}")
    artifacts = BASE_DIR / "var" / "test-artifacts" / run_id
    artifacts.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TEST_ARTIFACTS_DIR", str(artifacts))
    os.environ.setdefault("MEDIA_ROOT", str(artifacts / "media"))
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(artifacts / "prometheus"))
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        os.environ.setdefault("DATABASE_TEST_NAME", f"test_vg_{run_id}")
    else:
        os.environ.setdefault("DATABASE_TEST_NAME", str(artifacts / "test_db.sqlite3"))
    redis_proc = ensure_redis_url(artifacts / "redis")
    try:
        return subprocess.call([sys.executable, "-m", "pytest", *argv])
    finally:
        _drop_leftover_test_database()
        _delete_redis_keys(os.environ["REDIS_KEY_PREFIX"])
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)


def _delete_redis_keys(prefix: str) -> None:
    """Remove what this run left in Redis (unconsumed task messages, channel-layer groups, locks)."""
    url = os.environ.get("REDIS_URL", "")
    if not url or not prefix.startswith("test-"):
        return
    try:
        import redis

        from config.env import redis_db_of, redis_url_with_db

        base = redis_db_of(url)
        for db in (base, base + 1, base + 2):
            client = redis.Redis.from_url(redis_url_with_db(url, db), socket_timeout=5)
            batch = list(client.scan_iter(match=f"{prefix}*", count=1000))
            for start in range(0, len(batch), 500):
                client.delete(*batch[start:start + 500])
            client.close()
    except Exception as exc:  # best effort, like the database clean-up
        print(f"could not clean Redis keys {prefix}*: {exc}", file=sys.stderr)


def _drop_leftover_test_database() -> None:
    """pytest-django cannot drop a test database that a stray connection still holds; force it."""
    url = os.environ.get("DATABASE_URL", "")
    name = os.environ.get("DATABASE_TEST_NAME", "")
    if not url.startswith("postgres") or not name.startswith("test_vg_"):
        return
    try:
        import psycopg
        from psycopg import sql

        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    except Exception as exc:  # best effort: a leftover database is untidy, not a test failure
        print(f"could not drop {name}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
