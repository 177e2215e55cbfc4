"""Real OS processes for end-to-end tests: Celery workers, beat and daphne against the test database.

Each process runs in its own process group with its output in the run's artifacts folder, so a test can
SIGKILL a whole worker and the fixture can always clean up.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

from django.conf import settings
from django.db import connections

from jobs import queues as job_queues

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ALL_QUEUES = ",".join(job_queues.ALL)


def artifacts_dir() -> Path:
    path = Path(os.environ.get("TEST_ARTIFACTS_DIR", ROOT / "var" / "test-artifacts" / "adhoc"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """A URL for the database the tests are using right now (the test database)."""
    db = connections["default"].settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db.get("USER") or ""
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    return f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def subprocess_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        REDIS_KEY_PREFIX=settings.REDIS_KEY_PREFIX,
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        PYTHONUNBUFFERED="1",
    )
    from config.amqp import is_amqp
    from config.celery import app

    if is_amqp(app.conf.broker_url):  # a test switched this process to RabbitMQ (tests/brokers.py)
        env["CELERY_BROKER_URL"] = app.conf.broker_url
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class ProcessGroup:
    """Starts and always stops a set of named processes."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.pending: list[tuple[Callable[[], bool], float, str, str]] = []  # readiness not yet awaited

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = artifacts_dir() / f"{name}-{uuid.uuid4().hex[:6]}.log"
        handle = open(log, "w")
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)
        handle.close()
        self.procs[name], self.logs[name] = proc, log
        return proc

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace") if name in self.logs else ""

    def signal(self, name: str, sig: int) -> None:
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self, name: str) -> None:
        """SIGKILL the whole process group (a worker and its pool children) and reap it."""
        self.signal(name, signal.SIGKILL)
        self.procs[name].wait(10)

    def stop(self, name: str, timeout: float = 20.0) -> None:
        proc = self.procs.get(name)
        if proc is None:
            return
        if proc.poll() is None:
            self.signal(name, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.signal(name, signal.SIGKILL)  # stragglers in the group (pool children)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def stop_all(self, timeout: float = 10.0) -> None:
        """`stop` for every process at once: SIGTERM all, wait up to `timeout` for all, SIGKILL what is left."""
        running = [name for name, proc in self.procs.items() if proc.poll() is None]
        for name in running:
            self.signal(name, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in running:
            try:
                self.procs[name].wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for name, proc in self.procs.items():
            self.signal(name, signal.SIGKILL)  # stragglers in the group (pool children)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def wait_ready(self, *names: str) -> None:
        """Wait until the processes started with `wait=False` (all, or those named) are ready; they boot in parallel."""
        waiting = [entry for entry in self.pending if not names or entry[3] in names]
        self.pending = [entry for entry in self.pending if entry not in waiting]
        for check, deadline, what, name in waiting:
            _wait_for(check, max(0.0, deadline - time.monotonic()), what, self.procs[name], lambda n=name: self.log(n))

    def _ready_when(self, name: str, check: Callable[[], bool], timeout: float, what: str, wait: bool) -> None:
        if wait:
            _wait_for(check, timeout, what, self.procs[name], lambda: self.log(name))
        else:
            self.pending.append((check, time.monotonic() + timeout, what, name))

    # --- the three kinds of process ------------------------------------------------------------------

    def start_worker(self, name: str = "worker", *, queues: str = ALL_QUEUES, concurrency: int = 2,
                     ready_timeout: float = 60.0, extra_args: list[str] | None = None, wait: bool = True,
                     **env: str) -> subprocess.Popen:
        """A Celery worker; with `wait=False` its readiness is left to `wait_ready()`."""
        ready_file = artifacts_dir() / f"{name}-{uuid.uuid4().hex[:6]}.ready"
        command = [str(BIN / "celery"), "-A", "config", "worker", "-Q", queues, "-l", "INFO",
                   "--concurrency", str(concurrency), "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h",
                   "--without-gossip", "--without-mingle", *(extra_args or [])]
        proc = self.start(name, command, subprocess_env(WORKER_READY_FILE=str(ready_file), **env))
        self._ready_when(name, ready_file.exists, ready_timeout, f"worker {name}", wait)
        return proc

    def start_beat(self, name: str = "beat", **env: str) -> subprocess.Popen:
        schedule = artifacts_dir() / f"{name}-{uuid.uuid4().hex[:6]}"
        command = [str(BIN / "celery"), "-A", "config", "beat", "-l", "INFO",
                   "-S", "django_celery_beat.schedulers:DatabaseScheduler", "--pidfile", "", "-s", str(schedule)]
        return self.start(name, command, subprocess_env(**env))

    def start_daphne(self, name: str = "daphne", *, port: int | None = None, ready_timeout: float = 60.0,
                     wait: bool = True, app: str = "config.asgi:application", plain: bool = False,
                     args: list[str] | None = None, **env: str) -> int:
        """A web process on `port` (a free one by default): `python -m patches.daphne` as in production, or with
        `plain` the stock `daphne` (benchmark baselines); with `wait=False` its readiness is left to `wait_ready()`."""
        port = port or free_port()
        server = [str(BIN / "daphne")] if plain else [sys.executable, "-m", "patches.daphne"]
        self.start(name, [*server, "-b", "127.0.0.1", "-p", str(port), *(args or []), app], subprocess_env(**env))

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                return False

        self._ready_when(name, answers, ready_timeout, f"daphne {name}", wait)
        return port



def kill_stage_holder(job_id: object, stage: str, killed: set[int], due: Callable[[], bool]) -> bool:
    """SIGKILL the pool process holding the job's running `stage` lease, once per process and only when
    `due()` (e.g. the backend saw the job's prompt); True once the job is terminal. For wait_until()."""
    from jobs import leases, states
    from jobs.models import GenerationJob

    current = GenerationJob.objects.get(pk=job_id)
    if current.status in states.TERMINAL:
        return True
    running = [lease for lease in leases.stage_leases(current.pk, current.attempts, stage) if lease.state == leases.RUNNING]
    lease = running[0] if running else None  # the whole stage's, or one of its scene tasks' (jobs/scenes.py)
    if lease and lease.pid not in killed and due():
        killed.add(lease.pid)
        os.kill(lease.pid, signal.SIGKILL)
    return False


def _wait_for(check, timeout: float, what: str, proc: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log()[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready within {timeout} s:\n{log()[-3000:]}")


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.2, message: str = "condition"):
    """Poll `predicate` until it returns a truthy value; fail with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)
