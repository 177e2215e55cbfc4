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

from .embedded_redis import ensure_redis_url

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
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
