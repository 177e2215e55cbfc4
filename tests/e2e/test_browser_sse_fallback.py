"""The job page when websockets are blocked: static/js/jobsocket.js falls back to Server-Sent Events, and
to polling when the event stream is blocked too (Debian's chromium through Playwright, real daphne + worker)."""
from __future__ import annotations

import re

import pytest

from tests.e2e.test_browser import (  # noqa: F401 - fixtures
    SHORT_SCRIPT, assert_not_reloaded, browser, chromium, live, log_in, mark_page, new_page, progress_values,
    start_job_from_project_page, user,
)
from tests.factories import make_project

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A proxy that refuses websockets: every connection attempt fails before opening (error, then close 1006).
BLOCK_WEBSOCKETS = """
window.__wsAttempts = 0;
window.WebSocket = function (url) {
  window.__wsAttempts += 1;
  var socket = this;
  this.readyState = 0;
  setTimeout(function () {
    socket.readyState = 3;
    if (socket.onerror) { socket.onerror(new Event("error")); }
    if (socket.onclose) { socket.onclose({code: 1006, reason: "", wasClean: false}); }
  }, 20);
};
window.WebSocket.prototype.send = function () { throw new Error("not open"); };
window.WebSocket.prototype.close = function () {};
"""


def blocked_page(browser, base: str):
    page = new_page(browser, base)
    page.context.add_init_script(BLOCK_WEBSOCKETS)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    return page, requests


def test_browser__websockets_blocked_the_job_page_follows_the_event_stream(live, browser, user):
    # given a browser whose websockets never connect
    _, base = live
    project = make_project(owner=user, name="No sockets", script=SHORT_SCRIPT)
    page, requests = blocked_page(browser, base)
    log_in(page, "author")
    page.goto(f"/projects/{project.pk}/")

    # when a full video is started from the project page and watched on its job page
    job_id = start_job_from_project_page(page, "full_video", width=640, height=360, fps=24)
    mark_page(page)
    page.locator('[data-field="connection"][data-state="sse"]').wait_for(timeout=20_000)
    page.locator('body[data-status="completed"]').wait_for(timeout=180_000)

    # then the page followed the job live over /api/jobs/<id>/stream/, never polling the job
    assert page.evaluate("window.__wsAttempts") >= 3
    assert any(re.search(rf"/api/jobs/{job_id}/stream/", url) for url in requests)
    assert not any(url.rstrip("/").endswith(f"/api/jobs/{job_id}") for url in requests), "it polled"
    assert page.locator('[data-field="percent"]').inner_text() == "100.0 %"
    assert page.locator("video").count() == 1
    values = progress_values(page)
    assert values == sorted(values) and values[-1] == 100.0
    assert_not_reloaded(page)


def test_browser__websockets_and_event_stream_blocked_the_job_page_polls(live, browser, user):
    # given a browser whose websockets never connect and whose event-stream requests are refused
    _, base = live
    project = make_project(owner=user, name="Nothing streams", script=SHORT_SCRIPT)
    page, requests = blocked_page(browser, base)
    page.route(re.compile(r".*/stream/?(\?.*)?$"), lambda route: route.abort())
    log_in(page, "author")
    page.goto(f"/projects/{project.pk}/")

    # when a job is watched on its page
    job_id = start_job_from_project_page(page, "full_video", width=640, height=360, fps=24)
    mark_page(page)

    # then after the stream failed it polls the REST API and still sees the job finish
    page.locator('[data-field="connection"][data-state="polling"]').wait_for(timeout=30_000)
    page.locator('body[data-status="completed"]').wait_for(timeout=180_000)
    assert any(f"/api/jobs/{job_id}/stream/" in url for url in requests)
    assert any(url.rstrip("/").endswith(f"/api/jobs/{job_id}") for url in requests)
    assert_not_reloaded(page)
