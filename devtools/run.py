"""`make run`: migrate, bootstrap, then supervise daphne, a Celery worker and celery beat.

Every child runs in its own process group; SIGINT/SIGTERM (or any child dying) stops them all, so
nothing is left behind. The embedded Redis is started when REDIS_URL is unset.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devtools.embedded_redis import ensure_redis_url
from jobs import queues as job_queues

BASE_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
QUEUES = ",".join(job_queues.ALL)


def _commands(port: str) -> dict[str, list[str]]:
    return {
        "web": [sys.executable, "-m", "patches.daphne", "-b", os.environ.get("HOST", "127.0.0.1"), "-p", port, "config.asgi:application"],
        "worker": [str(BIN / "celery"), "-A", "config", "worker", "-Q", QUEUES, "-l", "INFO",
                   "--concurrency", os.environ.get("WORKER_CONCURRENCY", "2"), "-n", f"worker-{os.getpid()}@%h"],
        "beat": [str(BIN / "celery"), "-A", "config", "beat", "-l", "INFO",
                 "-S", "django_celery_beat.schedulers:DatabaseScheduler", "--pidfile", ""],
    }


def _stop(children: dict[str, subprocess.Popen], timeout: float = 15.0) -> None:
    for proc in children.values():
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for proc in children.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in children.values():  # whatever ignored SIGTERM, and any grandchildren in the group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def main() -> int:
    os.chdir(BASE_DIR)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    var_dir = Path(os.environ.get("VAR_DIR") or BASE_DIR / "var")
    var_dir.mkdir(parents=True, exist_ok=True)
    port = os.environ.get("PORT", "8000")
    children: dict[str, subprocess.Popen] = {}
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    redis_proc = ensure_redis_url(var_dir / "redis")
    if redis_proc is not None:
        children["redis"] = redis_proc
    try:
        manage = [sys.executable, "manage.py"]
        subprocess.run(manage + ["migrate", "--noinput", "-v", "0"], check=True)
        subprocess.run(manage + ["metrics", "reset"], check=False)  # counters start at zero per deployment
        subprocess.run(manage + ["bootstrap", "--url", f"http://127.0.0.1:{port}/"], check=True)
        for name, command in _commands(port).items():
            children[name] = subprocess.Popen(command, start_new_session=True)
        print(f"Running on http://127.0.0.1:{port}/  (Ctrl-C stops everything)", flush=True)
        while not stopping:
            for name, proc in children.items():
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; stopping", file=sys.stderr, flush=True)
                    stopping = True
                    break
            time.sleep(0.2)
    except subprocess.CalledProcessError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 1
    finally:
        _stop(children)
    return 0


if __name__ == "__main__":
    sys.exit(main())
