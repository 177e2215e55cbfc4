"""What every benchmark scenario shares: its own database and Redis prefix, processes, clients, statistics.

`BenchEnv.open()` creates the run's PostgreSQL database (`vg_bench_<id>`) and migrates it, points this
process's Django at it with a bench Redis key prefix, and `close()` drops the database and deletes the
prefix's keys. Servers and workers are started with tests/processes.py's ProcessGroup (a process group
each, always stopped); load clients are `python -m bench.clients` processes speaking a READY/GO protocol.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
DEFAULT_DATABASE_URL = "postgres://root@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def quick() -> bool:
    return os.environ.get("BENCH_QUICK", "") not in ("", "0", "false", "no")


def raise_open_files_limit(wanted: int = 65536) -> int:
    """Raise this process's (and its future children's) open-files limit to at least `wanted` if allowed.

    19,000 idle sockets in one web process need more descriptors than a common default hard limit (20,000
    here, with the clients' ends in other processes); root may raise the hard limit itself (up to
    fs.nr_open), anyone else gets the soft limit raised to the hard one. Returns the soft limit in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass  # not privileged: the hard limit stays
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(values: list[float], p: float) -> float:
    """The p-th (0..1) value of `values` (nearest rank), NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


@dataclass
class BenchEnv:
    """The run's database, Redis prefix and work folder; Django is set up against them on `open()`."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    base_database_url: str = ""
    redis_url: str = ""
    database_name: str = ""

    @property
    def prefix(self) -> str:
        return f"bench-{self.run_id}"

    @property
    def workdir(self) -> Path:
        return VAR / f"run-{self.run_id}"

    def open(self) -> None:
        self.base_database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
        if not self.base_database_url.startswith("postgres"):
            raise SystemExit("the benchmarks need PostgreSQL: set DATABASE_URL=postgres://… (or leave it unset)")
        self.redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
        self.database_name = f"vg_bench_{self.run_id}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._admin(f'CREATE DATABASE "{self.database_name}"')
        base = self.base_database_url.rsplit("/", 1)[0]
        os.environ.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=f"{base}/{self.database_name}",
            REDIS_URL=self.redis_url,
            REDIS_KEY_PREFIX=self.prefix,
            MEDIA_ROOT=str(self.workdir / "media"),
            PROMETHEUS_MULTIPROC_DIR=str(self.workdir / "prometheus"),
            TEST_ARTIFACTS_DIR=str(self.workdir / "logs"),  # ProcessGroup writes process logs there
            # Served as in production: debug off (no query log kept per request), plain HTTP on loopback.
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY=f"bench-{uuid.uuid4().hex}{uuid.uuid4().hex}",
            DJANGO_SECURE_SSL_REDIRECT="0",
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            PYTHONUNBUFFERED="1",
        )
        (self.workdir / "prometheus").mkdir(parents=True, exist_ok=True)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

    def close(self) -> None:
        """Stop what the run started, drop its database and delete its Redis keys (also after a signal)."""
        from django.db import connections

        stop_started()
        if not self.database_name:
            return  # open() never got as far as creating anything
        connections.close_all()
        try:
            self._admin(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')
        except Exception as exc:  # noqa: BLE001 - best effort; say so
            print(f"could not drop {self.database_name}: {exc}", file=sys.stderr)
        try:
            self.delete_redis_keys()
        except Exception as exc:  # noqa: BLE001 - best effort; say so
            print(f"could not delete the {self.prefix} Redis keys: {exc}", file=sys.stderr)

    def reset(self) -> None:
        """A clean state for the next scenario: what the last one started stopped, its rows and keys gone.

        Rows a scenario leaves change the next one: push10x's 1,000 `processing` jobs (bulk-written, no
        worker behind them) held every worker slot admission counts (jobs/admission.py `holding_jobs`), so
        time_to_start's jobs stayed `queued` and never reached `processing`. Truncating every table (as
        Django's `flush`, which TransactionTestCase uses) and deleting the prefix's keys (broker queues,
        worker announcements, leases, admission state) gives each scenario what a run of it alone gets.
        """
        from django.core.management import call_command
        from django.db import connections

        stop_started()
        connections.close_all()
        # A process stopped by SIGKILL may leave its backend for a moment; TRUNCATE must not wait on it.
        self._admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{self.database_name}' AND pid <> pg_backend_pid()")
        call_command("flush", interactive=False, verbosity=0)
        connections.close_all()
        self.delete_redis_keys()

    def delete_redis_keys(self) -> None:
        """Delete the run's keys (its own prefix only) from the broker, channel-layer and app databases."""
        import redis

        from config.env import redis_db_of, redis_url_with_db

        base = redis_db_of(self.redis_url)
        for db in (base, base + 1, base + 2):
            client = redis.Redis.from_url(redis_url_with_db(self.redis_url, db), socket_timeout=10)
            batch = list(client.scan_iter(match=f"{self.prefix}*", count=1000))
            for start in range(0, len(batch), 500):
                client.delete(*batch[start:start + 500])
            client.close()

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.base_database_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)


# --- data -------------------------------------------------------------------------------------------

def make_user_with_token() -> tuple[Any, str]:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user(f"bench-{uuid.uuid4().hex[:8]}", password=uuid.uuid4().hex)
    return user, Token.objects.create(user=user).key


def make_project(user: Any) -> Any:
    from projects.models import Project

    return Project.objects.create(owner=user, name="bench", script="## Scene 1\nA bench scene.\n")


def idle_watched_job() -> tuple[str, str]:
    """A token and a job that is never dispatched: what the idle-socket benches connect to."""
    from jobs import services

    raise_open_files_limit()
    user, token = make_user_with_token()
    with dispatching(None):
        job_id = str(services.job_create(project=make_project(user), job_type="image_generation").pk)
    return token, job_id


@contextmanager
def dispatching(signature_factory: Any | None) -> Iterator[None]:
    """Run the production dispatcher with another canvas (bench tasks), or with no dispatch at all (None).

    jobs.dispatch.dispatch_job looks `job_signature` up at call time, so swapping that one function keeps
    everything else of the production path: on-commit hand-off, apply_async(retry=False), mark dispatched.
    """
    from bench import tasks
    from jobs import dispatch, listeners

    original = dispatch.job_signature
    named = getattr(signature_factory, "task_name", None)  # the bench's workers send it too (bench/tasks.py)
    before = tasks._redis().get(tasks.dispatch_key())
    if signature_factory is None:
        listeners.unregister_listener(dispatch.on_event_committed)
    else:
        dispatch.job_signature = signature_factory
        if named:
            tasks._redis().set(tasks.dispatch_key(), named)
    try:
        yield
    finally:
        dispatch.job_signature = original
        if named:
            if before:
                tasks._redis().set(tasks.dispatch_key(), before)
            else:
                tasks._redis().delete(tasks.dispatch_key())
        listeners.register_listener(dispatch.on_event_committed)
        # Keep the listener order (dispatch first, then publish) the app registers.
        from realtime import publish

        listeners.unregister_listener(publish.on_event_committed)
        listeners.register_listener(publish.on_event_committed)


# --- processes ----------------------------------------------------------------------------------------

# Every ProcessGroup a scenario starts, so that bench/run.py can stop them after a scenario, a timeout or
# a signal even when the scenario's own `finally` never ran (or was cut short).
_GROUPS: list[Any] = []


def process_group() -> Any:
    from tests.processes import ProcessGroup

    group = ProcessGroup()
    _GROUPS.append(group)
    return group


def stop_started(timeout: float = 10.0) -> None:
    """Stop every process this run started and has not stopped: each ProcessGroup (SIGTERM, so a worker
    withdraws its capacity, then SIGKILL to its process group), then any other descendant still alive
    (load clients, forked reporters, bench/ws_fanout.py and its daphnes, which run in sessions of their own)."""
    while _GROUPS:
        group = _GROUPS.pop()
        if all(proc.poll() is not None for proc in group.procs.values()):
            continue  # stopped by its scenario (and reaped: its ids may belong to someone else by now)
        try:
            group.stop_all(timeout)
        except Exception as exc:  # noqa: BLE001 - the sweep below still gets its processes
            print(f"stopping a process group: {exc}", file=sys.stderr)
    stop_descendants(os.getpid(), timeout)


def stop_descendants(pid: int, timeout: float = 10.0, *, include_self: bool = False) -> None:
    """SIGTERM `pid`'s descendants (and `pid` itself with `include_self`), SIGKILL those alive after `timeout`.

    Read once before signalling: a process that dies first would hand its children to init, out of reach.
    Each one's process group is signalled too when it leads one (a Celery worker's pool children).
    """
    import psutil

    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + ([root] if include_self else [])
    except psutil.NoSuchProcess:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in procs:
            try:
                if os.getpgid(proc.pid) == proc.pid:
                    os.killpg(proc.pid, sig)
                else:
                    proc.send_signal(sig)
            except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
                pass
        _, procs = psutil.wait_procs(procs, timeout=timeout if sig == signal.SIGTERM else 5)
        if not procs:
            return


def rss_kb(pid: int) -> int:
    """Resident memory of one process, in KiB."""
    import psutil

    return psutil.Process(pid).memory_info().rss // 1024


class Clients:
    """Load-client processes (`python -m bench.clients MODE CONFIG`): READY, then GO, then a JSON summary."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, mode: str, configs: list[dict[str, Any]]) -> None:
        for config in configs:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "bench.clients", mode, json.dumps(config)], cwd=ROOT,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True))

    def wait_ready(self, timeout: float) -> list[dict[str, Any]]:
        """Wait for every client's READY line (which carries a small JSON status)."""
        deadline = time.monotonic() + timeout
        statuses = []
        for proc in self.procs:
            line = _readline(proc, max(1.0, deadline - time.monotonic()))
            if not line.startswith("READY"):
                raise RuntimeError(f"bench client failed before READY: {line!r}")
            statuses.append(json.loads(line[5:].strip() or "{}"))
        return statuses

    def go(self) -> None:
        for proc in self.procs:
            proc.stdin.write("GO\n")
            proc.stdin.flush()

    def results(self, timeout: float) -> list[dict[str, Any]]:
        out = []
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            stdout, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
            if not lines:
                raise RuntimeError(f"bench client exited {proc.returncode} without a summary")
            out.append(json.loads(lines[-1]))
        return out

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, 9)
                except ProcessLookupError:
                    pass
                proc.wait(5)
        self.procs = []


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        raise RuntimeError(f"bench client not ready within {timeout:.0f} s")
    return proc.stdout.readline().strip()


def split(items: list[Any], parts: int) -> list[list[Any]]:
    """`items` dealt round-robin into `parts` non-empty lists."""
    parts = max(1, min(parts, len(items)))
    return [items[i::parts] for i in range(parts)]


# How the bench serves the web tier "as in production" (README, Production settings): daphne with the
# psycopg pool on, WEB_PROCS processes (one per core) behind a balancer. BENCH_WEB_PROCS overrides.
# The bench's watchers all log in as one user (thousands of sockets), so the per-user socket cap of a web
# process (WS_SOCKETS_PER_USER, 20 by default) is lifted; 0 keeps its bookkeeping, only the refusal goes.
WS_ENV = {"WS_SOCKETS_PER_USER": "0"}
WEB_ENV = {"DATABASE_POOL": "1", "DATABASE_POOL_MIN": "2", "DATABASE_POOL_MAX": "8", **WS_ENV}
WEB_PROCS = int(os.environ.get("BENCH_WEB_PROCS", "2"))
