"""`make run` as a user runs it: it comes up, serves the admin login, and SIGTERM leaves no process."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from devtools.embedded_redis import free_port
from tests.brokers import redis_broker_only

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, redis_broker_only(
    "`make run` is the zero-configuration stack on its own embedded Redis, and it sends no job through a broker")]


def test_make_run__serves_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(PORT=str(port), VAR_DIR=str(tmp_path / "var"), MEDIA_ROOT=str(tmp_path / "media"),
               REDIS_KEY_PREFIX=f"makerun-{port}")
    proc = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    output: list[str] = []
    try:
        deadline = time.monotonic() + 180
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=2) as response:
                    status = response.status
                    break
            except OSError:
                time.sleep(0.5)
        assert status == 200, "make run did not serve /admin/login/"
        descendants = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in descendants if p.is_running())
        assert "daphne" in names and "worker" in names and "beat" in names and "redis-server" in names
    finally:
        os.killpg(proc.pid, signal.SIGTERM) if proc.poll() is None else None
        try:
            out, _ = proc.communicate(timeout=60)
            output.append(out)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    text = "".join(output)
    assert "Demo login (staff): demo /" in text and f"http://127.0.0.1:{port}/" in text
    _, alive = psutil.wait_procs(descendants, timeout=30)
    leftovers = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert leftovers == [], [p.cmdline() for p in leftovers]
