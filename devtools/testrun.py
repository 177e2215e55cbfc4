"""`make test`: give this run its own Redis key prefix and test database, then run pytest.

Two runs sharing one Redis or PostgreSQL would otherwise run each other's tasks and drop each other's
database. Without REDIS_URL an embedded Redis is started; without DATABASE_URL SQLite is used.

A whole run (no pytest arguments) runs LANES side by side: pytest sessions isolated from each other exactly
as two developers' runs are (a key prefix, test database, artifacts folder and RabbitMQ vhost each). The
suite's time is mostly waiting on real processes (worker boots, reaper periods, backoffs, pacing): CI's
RabbitMQ pass ended at load 1.0 on the 2 cores, so lanes cut the wall time without cutting a test. The e2e
lane ends with the RabbitMQ pass: AMQP_PASS_TESTS (the job-running end-to-end modules) again with
TEST_BROKER=amqp, so the job system is proven on both brokers. RabbitMQ unreachable: a loud warning and no second pass. TEST_AMQP_PASS=0 skips it, =1 runs
it after any run; TEST_BROKER=amqp makes the main run itself the RabbitMQ one. TEST_LANES=1 runs a whole run
as one session (the RabbitMQ pass after it), as before the lanes.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from devtools.embedded_redis import ensure_redis_url

BASE_DIR = Path(__file__).resolve().parent.parent
# The end-to-end modules run a second time on RabbitMQ: every module that runs jobs through workers (new
# ones join by themselves). Left out, to keep the pass within ~8 min of a quiet machine: the browser pages
# (same jobs as the API tests, seen through chromium), `make run` (its own embedded Redis) and
# test_amqp_broker.py (on a RabbitMQ vhost of its own already in the main run). README.md, "The two commands".
AMQP_PASS_TESTS = ["tests/e2e", "--ignore-glob=tests/e2e/test_browser*.py", "--ignore=tests/e2e/test_make_run.py",
                   "--ignore=tests/e2e/test_amqp_broker.py"]
AMQP_PASS = "amqp-pass"  # in a lane's steps: the RabbitMQ pass, when _amqp_pass_wanted
# A whole run's lanes (name: its pytest sessions, one after the other), balanced by the parts' CI times on the
# 2-core machine (one session: tests/e2e ~10 min + the RabbitMQ pass ~7 min against the ~17 min of the rest).
# Two lanes, not more: the fault-injection tests wait on real processes within generous but finite limits, and
# each lane keeps about a core of its own (at load ~20, test_api_load's 200 jobs overran their 200 s). Every
# directory of tests/ is in exactly one lane (tests/unit/test_testrun.py checks it). Names: no name is the
# start of another, since each lane's Redis keys are deleted by the prefix `test-<run>-<name>`.
LANES: dict[str, list[list[str] | str]] = {
    "e2e": [["tests/e2e"], AMQP_PASS],
    "others": [["tests/unit", "tests/integration", "tests/reliability"]],
}


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
        if not argv and _lanes_wanted():
            return _run_lanes(LANES)
        status = _pytest(argv)
        if _amqp_pass_wanted(argv):
            status = _amqp_pass() or status
        return status
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)


def _lanes_wanted() -> bool:
    return os.environ.get("TEST_LANES", "").strip() != "1"


def _pytest(argv: list[str], log: Path | None = None, **env: str) -> int:
    """One pytest session (its output appended to `log` if given); what it leaves in PostgreSQL and Redis is
    removed afterwards, pass or fail."""
    env = {**os.environ, **env}
    try:
        with open(log, "a") if log else contextlib.nullcontext() as out:
            return subprocess.call([sys.executable, "-m", "pytest", *argv], env=env, stdout=out,
                                   stderr=subprocess.STDOUT if out else None)
    finally:
        _drop_leftover_test_database(env)
        _delete_redis_keys(env)


def lane_env(name: str) -> dict[str, str]:
    """The isolation of a lane: the run's own key prefix, test database and folders, each with the lane's name."""
    artifacts = Path(os.environ["TEST_ARTIFACTS_DIR"]) / name
    artifacts.mkdir(parents=True, exist_ok=True)
    database = os.environ["DATABASE_TEST_NAME"]
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        database = f"{database}_{name.replace('-', '_')}"
    else:
        database = str(artifacts / "test_db.sqlite3")
    return {"TEST_RUN_ID": f"{os.environ['TEST_RUN_ID']}-{name}",
            "REDIS_KEY_PREFIX": f"{os.environ['REDIS_KEY_PREFIX']}-{name}",
            "TEST_ARTIFACTS_DIR": str(artifacts), "MEDIA_ROOT": str(artifacts / "media"),
            "PROMETHEUS_MULTIPROC_DIR": str(artifacts / "prometheus"), "DATABASE_TEST_NAME": database}


def _run_lanes(lanes: dict[str, list[list[str] | str]]) -> int:
    """Every lane at once, each in a thread running its sessions in order; their output printed as each ends."""
    statuses: dict[str, int] = {}
    printing = threading.Lock()
    started = time.monotonic()

    def run(name: str, steps: list[list[str] | str]) -> None:
        env = lane_env(name)
        log = Path(env["TEST_ARTIFACTS_DIR"]) / "pytest.log"
        status = 0
        for step in steps:
            if step == AMQP_PASS:
                if _amqp_pass_wanted([]):
                    status = _amqp_pass(log, **env) or status
            else:
                status = _pytest(list(step), log, **env) or status
        statuses[name] = status
        with printing:
            minutes = (time.monotonic() - started) / 60
            print(f"\n{'=' * 30} lane {name}: {'passed' if status == 0 else f'FAILED ({status})'} after "
                  f"{minutes:.1f} min (load average {os.getloadavg()[0]:.1f}) {'=' * 30}", flush=True)
            print(log.read_text(errors="replace"), flush=True)

    print(f"make test: {len(lanes)} lanes at once ({', '.join(lanes)}); each one's output when it ends, "
          f"under {os.environ['TEST_ARTIFACTS_DIR']}/<lane>/pytest.log meanwhile", flush=True)
    threads = [threading.Thread(target=run, args=(name, steps), name=f"lane-{name}") for name, steps in lanes.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summary = ", ".join(f"{name} {'passed' if statuses.get(name) == 0 else 'FAILED'}" for name in lanes)
    print(f"\nmake test: {summary} in {(time.monotonic() - started) / 60:.1f} min", flush=True)
    return next((status for status in statuses.values() if status), 0) if len(statuses) == len(lanes) else 1


def _amqp_pass_wanted(argv: list[str]) -> bool:
    if os.environ.get("TEST_BROKER", "").strip().lower() == "amqp":
        return False  # the main run already was on RabbitMQ
    wanted = os.environ.get("TEST_AMQP_PASS", "").strip()
    return wanted == "1" or (wanted != "0" and not argv)


def _amqp_pass(log: Path | None = None, **env: str) -> int:
    """AMQP_PASS_TESTS on RabbitMQ; 0 with a warning when no RabbitMQ answers (CI has one on the machine)."""
    from urllib.parse import urlsplit

    from tests.brokers import RABBITMQ_URL, rabbitmq_reachable

    if not rabbitmq_reachable():
        bar, where = "!" * 100, urlsplit(RABBITMQ_URL)  # host and port only: the URL may hold a password
        print(f"\n{bar}\nWARNING: RabbitMQ is not reachable at {where.hostname}:{where.port or 5672}: the end-to-end "
              f"suite did NOT run on "
              f"an amqp:// broker.\nStart RabbitMQ (or set RABBITMQ_URL) to run the RabbitMQ pass.\n{bar}\n",
              file=sys.stderr, flush=True)
        return 0
    print(f"\n=== RabbitMQ pass: pytest {' '.join(AMQP_PASS_TESTS)} with TEST_BROKER=amqp ===\n", flush=True)
    started = time.monotonic()
    status = _pytest(AMQP_PASS_TESTS, log, **{**env, "TEST_BROKER": "amqp"})
    minutes = (time.monotonic() - started) / 60
    print(f"=== RabbitMQ pass: {'passed' if status == 0 else f'FAILED ({status})'} in {minutes:.1f} min "
          f"(load average {os.getloadavg()[0]:.1f}) ===", flush=True)
    return status
def _delete_redis_keys(env: dict[str, str]) -> None:
    """Remove what this run left in Redis (unconsumed task messages, channel-layer groups, locks)."""
    url, prefix = env.get("REDIS_URL", ""), env.get("REDIS_KEY_PREFIX", "")
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


def _drop_leftover_test_database(env: dict[str, str]) -> None:
    """pytest-django cannot drop a test database that a stray connection still holds; force it."""
    url = env.get("DATABASE_URL", "")
    name = env.get("DATABASE_TEST_NAME", "")
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
