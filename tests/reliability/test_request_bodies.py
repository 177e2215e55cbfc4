"""1 GB request bodies, generated on the fly, are refused with 413 at the server edge in bounded memory."""
from __future__ import annotations

import select
import socket
import threading
import time

import httpx
import psutil
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

GIGABYTE = 1 << 30
RSS_GROWTH_LIMIT = 50 * 1024 * 1024
PATHS = ["/api/jobs/", "/api/auth/token/", "/accounts/login/"]


def post_huge(port: int, path: str, *, chunked: bool, total: int = GIGABYTE) -> tuple[bytes, int]:
    """POST `total` bytes (declared, or chunked) while reading; returns the response and how much was sent."""
    block = b"x" * 65536
    frame = b"%x\r\n%s\r\n" % (len(block), block) if chunked else block
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"{framing}\r\n\r\n".encode())
        sock.setblocking(False)
        sent, pending, response, sending = 0, memoryview(b""), b"", True
        deadline = time.monotonic() + 60
        # poll(), not select(): a busy test process (the soak's) may hold more than 1,024 descriptors
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        while time.monotonic() < deadline:
            want_write = sending and sent < total
            poller.modify(sock, select.POLLIN | (select.POLLOUT if want_write else 0))
            ready = dict(poller.poll(1000)).get(sock.fileno(), 0)
            readable, writable = ready & (select.POLLIN | select.POLLHUP | select.POLLERR), ready & select.POLLOUT
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                response += data
                sending = False  # the server answered: a client stops sending (and reads to the end)
            elif writable:
                if not pending:
                    pending = memoryview(frame)
                try:
                    count = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    sending = False
                    continue
                pending = pending[count:]
                sent += count
        return response, sent


class PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process, self.peak, self.stop = psutil.Process(pid), 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)


def test_request_bodies__1_gb_bodies_to_three_paths_get_413_and_the_web_process_grows_under_50_mb(processes):
    # given a web process that has served a request (Django and the views are loaded)
    port = processes.start_daphne()
    pid = processes.procs["daphne"].pid
    assert httpx.post(f"http://127.0.0.1:{port}/api/auth/token/", json={}).status_code == 400
    baseline = psutil.Process(pid).memory_info().rss
    sampler = PeakRss(pid)
    sampler.start()

    # when 1 GB bodies are posted to three paths, declared up front and chunked
    answers = {(path, chunked): post_huge(port, path, chunked=chunked) for path in PATHS for chunked in (False, True)}
    sampler.stop.set()
    sampler.join()

    # then each is refused with 413 naming the limit, long before the whole body was sent
    for (path, chunked), (response, sent) in answers.items():
        assert response.startswith(b"HTTP/1.1 413"), (path, chunked, response[:200])
        assert b"4194304 bytes" in response
        assert sent < GIGABYTE // 4, (path, chunked, sent)
    # and the web process grew by less than 50 MB, and still serves
    assert sampler.peak - baseline < RSS_GROWTH_LIMIT, f"web RSS grew by {(sampler.peak - baseline) / 2**20:.0f} MB"
    response = httpx.post(f"http://127.0.0.1:{port}/api/auth/token/", json={"username": "nobody", "password": "x"})
    assert response.status_code == 400 and "non_field_errors" in response.json()
    # (a small chunked body is let through to Django, which reads it as usual)
    small = httpx.post(f"http://127.0.0.1:{port}/api/auth/token/", content=iter([b"{}"]),
                       headers={"Content-Type": "application/json"})
    assert small.status_code == 400
