"""One delivery attempt over real HTTP: no redirects followed, a bounded read, a short timeout, the checked address."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.processes import free_port
from webhooks.sender import RESPONSE_READ_LIMIT, post


@pytest.fixture
def server(settings):
    """A loopback HTTP server whose answer each test sets: (status, headers, body bytes, delay_s)."""
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOW_PRIVATE": True}
    state = {"answer": (200, {}, b"", 0.0), "requests": []}
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state["requests"].append((self.path, self.headers.get("Host")))
            status, headers, body, delay = state["answer"]
            if delay:
                release.wait(delay)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass

    port = free_port()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state["port"] = port
    yield state
    release.set()
    httpd.shutdown()
    httpd.server_close()


def test_post__a_redirect_is_not_followed(server):
    server["answer"] = (307, {"Location": f"http://127.0.0.1:{server['port']}/elsewhere"}, b"", 0.0)

    outcome = post(url=f"http://127.0.0.1:{server['port']}/in", body="{}", headers={}, timeout_s=2)

    assert outcome.status_code == 307 and not outcome.ok
    assert [path for path, _ in server["requests"]] == ["/in"]


def test_post__reads_only_a_little_of_a_large_answer(server):
    server["answer"] = (500, {}, b"x" * (RESPONSE_READ_LIMIT * 200), 0.0)

    outcome = post(url=f"http://127.0.0.1:{server['port']}/in", body="{}", headers={}, timeout_s=2)

    assert outcome.status_code == 500 and not outcome.ok and len(outcome.error) <= 200


def test_post__no_answer_within_the_timeout_is_a_failed_attempt(server):
    server["answer"] = (200, {}, b"late", 5.0)

    outcome = post(url=f"http://127.0.0.1:{server['port']}/in", body="{}", headers={}, timeout_s=0.5)

    assert outcome.status_code is None and not outcome.ok and "timed out" in outcome.error.lower()


def test_post__connects_to_the_checked_address_and_keeps_the_host_name(server):
    outcome = post(url=f"http://localhost:{server['port']}/in?x=1", body="{}", headers={}, timeout_s=2)

    assert outcome.ok
    assert server["requests"] == [("/in?x=1", f"localhost:{server['port']}")]


def test_post__a_refused_address_is_not_contacted(server, settings):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOW_PRIVATE": False}

    outcome = post(url=f"http://localhost:{server['port']}/in", body="{}", headers={}, timeout_s=2)

    assert outcome.refused and "loopback" in outcome.error and server["requests"] == []
