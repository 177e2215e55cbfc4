"""A waiting job's place in line in a real browser: the job page says "2nd in line", then "next in line"
as the job ahead starts, without a reload (the websocket's `queue` message), and the project page says it
for every waiting job."""
from __future__ import annotations

import re

import pytest

from jobs import capacity, leases, services
from tests.e2e.fake_backend import script
from tests.e2e.test_browser import PASSWORD, assert_not_reloaded, browser, chromium, log_in, mark_page, new_page  # noqa: F401
from tests.factories import make_project, make_user
from tests.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The one worker slot alone decides, one job at a time (no admitted job waiting in the broker).
ONE_AT_A_TIME = {"JOBS_MAX_RUNNING_PER_USER": "0", "JOBS_ADMISSION_HEADROOM": "0"}


def test_browser_queue__job_page_counts_down_its_place_in_line(processes, browser, backend, settings):  # noqa: F811
    leases.client().delete(capacity._key())
    settings.JOBS = {**settings.JOBS, "MAX_RUNNING_PER_USER": 0, "ADMISSION_HEADROOM": 0}
    processes.start_worker(concurrency=1, SD_API_URL=backend.url, wait=False, **ONE_AT_A_TIME)
    port = processes.start_daphne(wait=False, **ONE_AT_A_TIME)
    processes.wait_ready()
    wait_until(lambda: (capacity.slots() or {}).get("image_generation") == 1, timeout=20, message="the slot")
    user = make_user(username="waiter", password=PASSWORD)
    project = make_project(owner=user, script=script("A scene [slow:4] here."))
    jobs = [services.job_create(project=project, job_type="image_generation", params={"width": 64, "height": 64})
            for _ in range(5)]

    page = new_page(browser, f"http://127.0.0.1:{port}")
    log_in(page, "waiter")
    page.goto(f"/projects/{project.pk}/")
    page.locator(f'tr[data-job-id="{jobs[4].pk}"] [data-field="queue"]', has_text="in line").wait_for()
    page.goto(f"/jobs/{jobs[4].pk}/")
    mark_page(page)
    detail = page.locator('[data-field="status-detail"]')
    first = detail.inner_text()
    assert re.search(r"\b[234](nd|rd|th) in line", first), first
    detail.filter(has_text="next in line").wait_for(timeout=60_000)  # pushed as the jobs ahead start
    page.locator('[data-field="status"]', has_text="processing").wait_for(timeout=60_000)
    assert_not_reloaded(page)
