"""A waiting job's place in line in a real browser: the job page says "2nd in line", then "next in line"
as the job ahead starts, without a reload (the websocket's `queue` message), and the project page says it
for every waiting job."""
from __future__ import annotations

import re

import pytest

from jobs import capacity, leases, services
from jobs.models import GenerationJob
from tests.e2e.fake_backend import script
from tests.e2e.test_browser import PASSWORD, assert_not_reloaded, browser, chromium, log_in, mark_page, new_page  # noqa: F401
from tests.factories import make_project, make_user
from tests.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The one worker slot alone decides, one job at a time (no admitted job waiting in the broker).
ONE_AT_A_TIME = {"JOBS_MAX_RUNNING_PER_USER": "0", "JOBS_ADMISSION_HEADROOM": "0"}


def one_slot(processes, backend, settings) -> int:
    """One image worker slot, known to admission, and a web process on the returned port."""
    leases.client().delete(capacity._key())
    settings.JOBS = {**settings.JOBS, "MAX_RUNNING_PER_USER": 0, "ADMISSION_HEADROOM": 0}
    processes.start_worker(concurrency=1, SD_API_URL=backend.url, wait=False, **ONE_AT_A_TIME)
    port = processes.start_daphne(wait=False, **ONE_AT_A_TIME)
    processes.wait_ready()
    wait_until(lambda: (capacity.slots() or {}).get("image_generation") == 1, timeout=20, message="the slot")
    return port


def test_browser_queue__job_page_counts_down_its_place_in_line(processes, browser, backend, settings):  # noqa: F811
    port = one_slot(processes, backend, settings)
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


def test_browser_queue__the_estimate_stays_when_the_live_snapshot_arrives(processes, browser, backend, settings):  # noqa: F811
    # given one worker slot, a finished job of the type to estimate from (30 s), one job running, three waiting
    port = one_slot(processes, backend, settings)
    user = make_user(username="estimated", password=PASSWORD)
    project = make_project(owner=user, script=script("A scene [slow:20] here."))
    finished_earlier(project, run_s=30)
    jobs = [services.job_create(project=project, job_type="image_generation", params={"width": 64, "height": 64})
            for _ in range(4)]
    wait_until(lambda: GenerationJob.objects.get(pk=jobs[0].pk).status == "processing", timeout=30,
               message="the first job running")

    # when the owner opens the last one's page and its socket delivers the snapshot (place, but no estimate)
    page = new_page(browser, f"http://127.0.0.1:{port}")
    log_in(page, "estimated")
    page.goto(f"/jobs/{jobs[3].pk}/")
    page.locator('[data-field="connection"][data-state="open"]').wait_for(timeout=20_000)
    page.wait_for_timeout(1_000)

    # then the page still says when it starts, as the server rendered it; and so does the project page
    detail = page.locator('[data-field="status-detail"]').inner_text()
    assert re.search(r"\b3rd in line, starts in about", detail), detail
    page.goto(f"/projects/{project.pk}/")
    page.locator('[data-field="connection"][data-state="open"]').wait_for(timeout=20_000)
    page.wait_for_timeout(1_000)
    cell = page.locator(f'tr[data-job-id="{jobs[3].pk}"] [data-field="queue"]').inner_text()
    assert "3rd in line, starts in about" in cell, cell


def finished_earlier(project, *, run_s: float) -> None:
    """A completed job of the type that ran `run_s` seconds: what the estimate is made from."""
    from datetime import timedelta

    from django.utils import timezone

    job = services.job_create(project=project, job_type="image_generation", params={"width": 64, "height": 64})
    services.job_cancel(job_id=job.pk)
    ended = timezone.now()
    GenerationJob.objects.filter(pk=job.pk).update(status="completed", started_at=ended - timedelta(seconds=run_s),
                                                   completed_at=ended)
