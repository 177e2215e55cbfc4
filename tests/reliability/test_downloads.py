"""Artifact downloads stream in bounded memory: six slow clients of a 300 MB file barely grow the web process."""
from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import psutil
import pytest

from jobs import services
from tests.factories import make_job, make_project, make_user

from .conftest import token_for

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

SIZE = 300 * 1024 * 1024
CLIENTS = 6
RSS_GROWTH_LIMIT = 50 * 1024 * 1024
MARKS = {0: b"first bytes", SIZE // 2: b"the middle", SIZE - 9: b"last byte"}


def _artifact(media_root, job_id) -> str:
    """A sparse 300 MB file (no disk space used) with a few marked places to check what was served."""
    folder = media_root / "jobs" / str(job_id)
    folder.mkdir(parents=True)
    path = folder / "video.mp4"
    with open(path, "wb") as handle:
        handle.truncate(SIZE)
        for offset, mark in MARKS.items():
            handle.seek(offset)
            handle.write(mark)
    return "video.mp4"


def _expected_digest() -> str:
    digest = hashlib.sha256()
    position = 0
    for offset, mark in sorted(MARKS.items()):
        digest.update(bytes(offset - position))
        digest.update(mark)
        position = offset + len(mark)
    digest.update(bytes(SIZE - position))
    return digest.hexdigest()


class SlowClient(threading.Thread):
    """Downloads over a socket with a small receive buffer at about `rate` bytes a second."""

    def __init__(self, port: int, path: str, token: str, rate: int, stop: threading.Event, headers: str = "") -> None:
        super().__init__(daemon=True)
        self.port, self.path, self.token, self.rate, self.stop = port, path, token, rate, stop
        self.headers, self.received, self.head = headers, 0, b""

    def run(self) -> None:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Token {self.token}\r\n"
                         f"{self.headers}\r\n".encode())
            sock.settimeout(10)
            started = time.monotonic()
            while not self.stop.is_set():
                data = sock.recv(16 * 1024)
                if not data:
                    return
                if not self.head:
                    self.head = data[:200]
                self.received += len(data)
                ahead = self.received / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)


def _rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def test_downloads__six_slow_clients_of_a_300_mb_artifact_grow_the_web_process_under_50_mb(processes, settings):
    # given a web process and a completed job whose artifact is 300 MB
    port = processes.start_daphne()
    pid = processes.procs["daphne"].pid
    owner = make_user()
    token = token_for(owner)
    job = make_job(project=make_project(owner=owner))
    name = _artifact(settings.MEDIA_ROOT, job.pk)
    services.job_start(job_id=job.pk)
    services.job_complete(job_id=job.pk, result={"artifacts": [
        {"kind": "video", "path": name, "url": f"/api/jobs/{job.pk}/artifacts/{name}", "bytes": SIZE,
         "content_type": "video/mp4"}]})
    url = f"/api/jobs/{job.pk}/artifacts/{name}"
    warm = SlowClient(port, url, token, rate=10**9, stop=threading.Event(), headers="Range: bytes=0-99\r\n")
    warm.run()  # the first request loads Django's views and the database connection
    assert b"206" in warm.head.split(b"\r\n")[0]
    baseline = _rss(pid)

    # when six clients download it at 2 MB/s each (three of them a range from the middle, as players do)
    stop = threading.Event()
    clients = [SlowClient(port, url, token, rate=2 * 1024 * 1024, stop=stop,
                          headers=f"Range: bytes={SIZE // 2}-\r\n" if n % 2 else "") for n in range(CLIENTS)]
    for client in clients:
        client.start()
    peak = baseline
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        peak = max(peak, _rss(pid))
        time.sleep(0.05)
    stop.set()
    for client in clients:
        client.join(15)

    # then every client was being served, and the web process grew by less than 50 MB
    assert all(client.received > 1024 * 1024 for client in clients), [c.received for c in clients]
    assert [client.head.split(b"\r\n")[0].split()[1] for client in clients] == [b"200", b"206"] * (CLIENTS // 2)
    assert peak - baseline < RSS_GROWTH_LIMIT, f"web RSS grew by {(peak - baseline) / 2**20:.0f} MB"

    # and a whole download at full speed delivers every byte
    digest = hashlib.sha256()
    import httpx

    with httpx.stream("GET", f"http://127.0.0.1:{port}{url}", headers={"Authorization": f"Token {token}"},
                      timeout=60) as response:
        assert response.status_code == 200 and response.headers["Content-Length"] == str(SIZE)
        for chunk in response.iter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == _expected_digest()
    assert _rss(pid) - baseline < RSS_GROWTH_LIMIT
