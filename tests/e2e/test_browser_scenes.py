"""The job page's scene previews in a real browser: each scene's image (and narration player) appears as its
`artifact` message arrives, one by one, while the job still runs (before the video exists)."""
from __future__ import annotations

import pytest

from jobs import queues, services, states
from jobs.models import GenerationJob
from tests.e2e.fake_backend import script
from tests.factories import make_project
from tests.processes import wait_until

from .test_browser import browser, chromium, log_in, mark_page, new_page, screenshot, user  # noqa: F401 - fixtures
from .test_browser import assert_not_reloaded

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCENES = 6
NOT_IMAGES = ",".join(q for q in queues.ALL if q != queues.IMAGE)
# Each change of the number of scene images on the page, with the job's status shown at that moment.
RECORDER = """
window.__scenes = [];
document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("scene-previews");
  if (!list) return;
  let last = list.querySelectorAll("img").length;
  new MutationObserver(() => {
    const count = list.querySelectorAll("img").length;
    if (count !== last) {
      last = count;
      const status = document.querySelector('[data-field="status"]');
      window.__scenes.push({count, t: Date.now(), status: status ? status.textContent.trim() : ""});
    }
  }).observe(list, {subtree: true, childList: true});
});
"""


def test_browser_scenes__scene_images_appear_one_by_one_while_the_job_runs(processes, backend, browser, user):
    # given a full video whose scene images take 0.6 s each on one image worker, and its job page open
    # before any worker runs
    port = processes.start_daphne()
    project = make_project(owner=user, script=script(*(f"Cliff [slow:0.6] path {n}." for n in range(SCENES))))
    job = services.job_create(project=project, job_type="full_video", params={"width": 160, "height": 90, "fps": 5})
    page = new_page(browser, f"http://127.0.0.1:{port}")
    page.context.add_init_script(RECORDER)
    log_in(page, "author")
    page.goto(f"/jobs/{job.pk}/")
    mark_page(page)
    assert page.locator("#scene-previews img").count() == 0

    # when the workers start
    env = {"SD_API_URL": backend.url}
    processes.start_worker("images", queues=queues.IMAGE, concurrency=1, wait=False, **env)
    processes.start_worker("others", queues=NOT_IMAGES, concurrency=2, wait=False, **env)
    page.locator("#scene-previews img").nth(SCENES - 1).wait_for(timeout=120_000)
    page.locator("video").wait_for(timeout=60_000)

    # then the images appeared one at a time, in scene order, the first ones while the job was running
    seen = page.evaluate("window.__scenes")
    assert [s["count"] for s in seen] == list(range(1, SCENES + 1)), seen
    assert seen[0]["status"] == states.PROCESSING and seen[-2]["status"] == states.PROCESSING, seen
    assert len({s["t"] for s in seen}) == SCENES, "each image arrived on its own"
    scenes_shown = page.locator("#scene-previews li").evaluate_all("els => els.map(e => e.dataset.scene)")
    assert scenes_shown == [str(n) for n in range(1, SCENES + 1)]
    # each with its narration player, and the page was never reloaded
    assert page.locator("#scene-previews audio").count() == SCENES
    assert GenerationJob.objects.get(pk=job.pk).status == states.COMPLETED
    assert_not_reloaded(page)
    screenshot(page, "scene-previews")


# Each change of the project page's "scenes done" cell of one job (its data-done).
DONE_RECORDER = """
window.__done = [];
document.addEventListener("DOMContentLoaded", () => {
  const cell = document.querySelector('tr[data-job-id="%s"] [data-field="scenes"]');
  if (!cell) return;
  window.__done.push(Number(cell.dataset.done));
  new MutationObserver(() => window.__done.push(Number(cell.dataset.done)))
    .observe(cell, {attributes: true, attributeFilter: ["data-done"]});
});
"""


def test_browser_scenes__the_project_page_counts_on_from_the_scenes_done_when_it_loaded(processes, backend, browser,
                                                                                          user):
    # given a full video whose narration is all done and whose images take 2 s each, two of them stored
    port = processes.start_daphne()
    project = make_project(owner=user, script=script(*(f"Harbour [slow:2] light {n}." for n in range(SCENES))))
    job = services.job_create(project=project, job_type="full_video", params={"width": 160, "height": 90, "fps": 5})
    env = {"SD_API_URL": backend.url}
    page = new_page(browser, f"http://127.0.0.1:{port}")
    page.context.add_init_script(DONE_RECORDER % job.pk)
    log_in(page, "author")
    processes.start_worker("images", queues=queues.IMAGE, concurrency=1, wait=False, **env)
    processes.start_worker("others", queues=NOT_IMAGES, concurrency=2, wait=False, **env)
    wait_until(lambda: images_done(job) >= 2, timeout=90, message="two scene images")

    # when the owner opens the project page mid-job
    page.goto(f"/projects/{project.pk}/")
    wait_until(lambda: GenerationJob.objects.get(pk=job.pk).status == states.COMPLETED, timeout=120,
               message="the job completed")
    page.locator(f'tr[data-job-id="{job.pk}"] [data-field="scenes"]', has_text=f"{SCENES} / {SCENES}").wait_for()

    # then the count went on from what was done at load, one scene at a time, never back
    counts = page.evaluate("window.__done")
    assert counts[0] >= 2 and counts == sorted(counts) and counts[-1] == SCENES, counts
    assert len(set(counts)) >= 3, f"scenes were counted live, not only at the end: {counts}"


def images_done(job) -> int:
    from jobs.models import SceneCheckpoint

    return SceneCheckpoint.objects.filter(job=job, kind="image", state=SceneCheckpoint.DONE).count()
