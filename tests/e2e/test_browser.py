"""The pages in a real browser (Debian's chromium through Playwright) against daphne and a Celery worker.

Each test logs in through the login page, drives the pages like a user and never reloads the page it is
watching: a reload would wipe the `window.__pageToken` the test sets, which every test checks at the end.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from jobs import states
from jobs.models import GenerationJob
from tests.factories import make_project, make_user
from tests.processes import artifacts_dir

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PASSWORD = "pw-browser-123456"
SHORT_SCRIPT = ("# Sunrise\nThe city wakes up.\n\n# Market\nStalls open one by one.\n\n"
                "# Noon\nThe square fills with people.\n\n# Dusk\nLights come on along the river.\n")

# Every change of a progress bar or a status badge, recorded in the page, so a test can tell that the bar
# rose through intermediate values rather than jumping to the end.
RECORDER = """
window.__seen = [];
document.addEventListener("DOMContentLoaded", () => {
  new MutationObserver((records) => {
    for (const r of records) {
      const node = r.target.nodeType === Node.ELEMENT_NODE ? r.target : r.target.parentElement;
      if (!node) continue;
      const row = node.closest ? node.closest("[data-job-id]") : null;
      const job = row ? row.getAttribute("data-job-id") : document.body.dataset.jobId;
      if (r.type === "attributes" && r.attributeName === "aria-valuenow") {
        window.__seen.push({job, progress: parseFloat(node.getAttribute("aria-valuenow")), t: Date.now()});
      } else if (node.matches && node.matches('[data-field="status"]')) {
        window.__seen.push({job, status: node.textContent.trim(), t: Date.now()});
      }
    }
  }).observe(document.body, {subtree: true, attributes: true, attributeFilter: ["aria-valuenow"],
                             childList: true, characterData: true});
});
"""


@pytest.fixture
def live(processes):
    """A daphne server and one worker against the test database; returns (processes, base URL)."""
    processes.start_worker(concurrency=2, wait=False)
    port = processes.start_daphne(wait=False)
    processes.wait_ready()
    return processes, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def chromium():
    """One chromium for the module; each test opens its own contexts (cookies, storage, pages)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are still sync.
    with pytest.MonkeyPatch.context() as monkeypatch, sync_playwright() as playwright:
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def browser(chromium):
    yield chromium
    for context in chromium.contexts:  # no page of this test lives on into the next one
        context.close()


@pytest.fixture
def user(transactional_db):
    return make_user(username="author", password=PASSWORD)


def new_page(browser, base: str, width: int = 1280, height: int = 900):
    context = browser.new_context(base_url=base, viewport={"width": width, "height": height})
    context.add_init_script(RECORDER)
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


def log_in(page, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Your projects").wait_for()


def mark_page(page) -> None:
    page.evaluate("window.__pageToken = 'not-reloaded'")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("window.__pageToken") == "not-reloaded", "the page was reloaded"


def screenshot(page, name: str) -> Path:
    path = artifacts_dir() / f"browser-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def start_job_from_project_page(page, job_type: str, **params: int | str) -> str:
    """Fill the job type's start form on the project page, submit it, and return the new job's id."""
    form = page.locator(f"#start-{job_type}")
    for name, value in params.items():
        control = form.locator(f"[name='{job_type}-{name}']")
        if control.evaluate("e => e.tagName") == "SELECT":
            control.select_option(str(value))
        else:
            control.fill(str(value))
    form.get_by_role("button").click()
    page.wait_for_url("**/jobs/*/")
    return page.url.rstrip("/").rsplit("/", 1)[-1]


def progress_values(page, job_id: str | None = None) -> list[float]:
    seen = page.evaluate("window.__seen")
    return [s["progress"] for s in seen if "progress" in s and (job_id is None or s["job"] == job_id)]


def long_script(scenes: int) -> str:
    return "\n\n".join(f"# Scene {i}\nScene number {i} shows the long road through the hills at dusk, "
                       f"with the wind moving through the grass." for i in range(1, scenes + 1))


# --- scenarios -----------------------------------------------------------------------------------------

def test_browser__full_video_progress_reaches_100_and_video_downloads(live, browser, user):
    _, base = live
    page = new_page(browser, base)
    log_in(page, "author")

    # Create a project through the form, first showing the inline errors of an empty submit.
    page.get_by_role("button", name="Create project").click()
    assert page.locator("#id_name_error").inner_text() == "This field is required."
    page.get_by_label("Name").fill("Browser film")
    page.get_by_label("Script").fill(SHORT_SCRIPT)
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url("**/projects/*/")

    job_id = start_job_from_project_page(page, "full_video", width=640, height=360, fps=24)
    mark_page(page)
    bar = page.get_by_role("progressbar", name="Job progress")
    entries_at_load = page.locator("#timeline li").count()

    page.locator('[data-field="percent"]').filter(has_text="100.0 %").wait_for(timeout=120_000)
    page.locator("video").wait_for(timeout=10_000)

    assert bar.get_attribute("aria-valuenow") == "100.0"
    assert page.locator('[data-field="status"]').inner_text() == "completed"
    values = progress_values(page)
    assert values == sorted(values), values
    assert any(0 < v < 100 for v in values), f"the bar never showed an intermediate value: {values}"
    # Stage changes and the completion were appended to the timeline live.
    assert page.locator("#timeline li").count() > entries_at_load
    assert "completed" in page.locator("#timeline li").last.inner_text()
    src = page.locator("video").get_attribute("src")
    status, size = page.evaluate(
        "async (url) => { const r = await fetch(url); const b = await r.arrayBuffer(); return [r.status, b.byteLength]; }",
        src,
    )
    assert (status, size > 0) == (200, True), (src, status, size)
    assert page.locator(".image-grid img").count() == 4
    assert_not_reloaded(page)
    shot = screenshot(page, "full-video")
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS"):  # README's picture is refreshed on request only
        docs = ROOT / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, docs / "job-page.png")
    # The same page stays usable on a phone-sized screen.
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(page, "full-video-375")

    # The finished job offers "Re-run from" (shown live, without a reload); from the video it completes again
    form = page.locator("#job-rerun")
    assert form.is_visible()
    form.get_by_label("Re-run from").select_option("video")
    form.get_by_role("button", name="Re-run").click()
    page.wait_for_load_state()
    page.locator('[data-field="attempt"]').filter(has_text="2").wait_for(timeout=10_000)
    page.locator('[data-field="percent"]').filter(has_text="100.0 %").wait_for(timeout=120_000)
    assert page.locator('[data-field="status"]').inner_text() == "completed"


def test_browser__cancel_long_job_from_the_page(live, browser, user):
    _, base = live
    project = make_project(owner=user, name="Long film", script=long_script(100))
    page = new_page(browser, base)
    log_in(page, "author")
    page.goto(f"/projects/{project.pk}/")
    job_id = start_job_from_project_page(page, "full_video", width=1280, height=720, max_scenes=200)
    mark_page(page)
    page.locator('body[data-status="processing"]').wait_for(timeout=60_000)

    page.get_by_role("button", name="Cancel job").click()
    clicked = time.monotonic()
    page.locator('[data-field="status"]').filter(has_text="cancelled").wait_for(timeout=5_000)
    shown_after = time.monotonic() - clicked

    assert shown_after < 5
    assert page.get_by_role("button", name="Retry job").is_visible()
    assert not page.get_by_role("button", name="Cancel job").is_visible()
    assert GenerationJob.objects.get(pk=job_id).status == states.CANCELLED
    # The cancelled job stays cancelled: no late progress from the worker moves the page again.
    time.sleep(2)
    assert page.locator('[data-field="status"]').inner_text() == "cancelled"
    screenshot(page, "cancelled")

    # Retry from the page starts a second attempt, live, and it can be cancelled again.
    page.get_by_role("button", name="Retry job").click()
    page.locator('body[data-status="processing"]').wait_for(timeout=30_000)
    assert page.locator('[data-field="attempt"]').inner_text() == "2"
    assert page.get_by_role("button", name="Cancel job").is_visible()
    page.get_by_role("button", name="Cancel job").click()
    page.locator('[data-field="status"]').filter(has_text="cancelled").wait_for(timeout=5_000)
    assert GenerationJob.objects.get(pk=job_id).attempts == 2
    assert_not_reloaded(page)


def test_browser__page_reconnects_after_daphne_restart(live, browser, user):
    processes, base = live
    port = int(base.rsplit(":", 1)[1])
    project = make_project(owner=user, name="Restart film", script=long_script(25))
    page = new_page(browser, base)
    log_in(page, "author")
    page.goto(f"/projects/{project.pk}/")
    start_job_from_project_page(page, "full_video", width=960, height=540, fps=24)
    mark_page(page)
    page.locator('[data-field="connection"][data-state="open"]').wait_for(timeout=15_000)
    page.locator('body[data-status="processing"]').wait_for(timeout=60_000)

    processes.stop("daphne", timeout=5)
    page.locator('[data-field="connection"]:not([data-state="open"])').wait_for(timeout=15_000)
    during_outage = page.locator('[data-field="connection"]').get_attribute("data-state")
    processes.start_daphne(port=port)

    page.locator('body[data-status="completed"]').wait_for(timeout=180_000)
    page.locator('[data-field="connection"][data-state="open"]').wait_for(timeout=30_000)

    assert during_outage in ("reconnecting", "polling", "closed")
    assert page.locator('[data-field="percent"]').inner_text() == "100.0 %"
    assert page.locator("video").count() == 1
    assert_not_reloaded(page)
    screenshot(page, "daphne-restart")


def test_browser__project_table_updates_live_for_two_jobs(live, browser, user):
    _, base = live
    project = make_project(owner=user, name="Two jobs", script=long_script(15))
    watcher = new_page(browser, base)
    log_in(watcher, "author")
    watcher.goto(f"/projects/{project.pk}/")
    mark_page(watcher)
    watcher.locator('[data-field="connection"][data-state="open"]').wait_for(timeout=15_000)

    # A second tab starts two jobs through the forms while the first one only watches.
    starter = watcher.context.new_page()
    starter.goto(f"/projects/{project.pk}/")
    first = start_job_from_project_page(starter, "image_generation", width=640, height=360)
    starter.goto(f"/projects/{project.pk}/")
    second = start_job_from_project_page(starter, "audio_generation", rate_wpm=160)
    starter.close()

    for job_id, label in ((first, "Image generation"), (second, "Audio generation")):
        row = watcher.locator(f'tr[data-job-id="{job_id}"]')
        row.locator('[data-field="status"]').filter(has_text="completed").wait_for(timeout=120_000)
        row.get_by_role("link", name=label).wait_for(timeout=5_000)
        assert row.locator('[data-field="percent"]').inner_text() == "100 %"
        assert row.get_by_role("progressbar").get_attribute("aria-valuenow") == "100.0"

    seen = watcher.evaluate("window.__seen")
    for job_id in (first, second):
        statuses = [s["status"] for s in seen if s.get("job") == job_id and "status" in s]
        values = [s["progress"] for s in seen if s.get("job") == job_id and "progress" in s]
        assert "processing" in statuses and statuses[-1] == "completed", (job_id, statuses)
        assert any(0 < v < 100 for v in values), (job_id, values)
    assert watcher.locator("#jobs-table tbody tr").count() == 2
    assert_not_reloaded(watcher)
    screenshot(watcher, "project-two-jobs")


def test_browser__job_page_without_javascript_refreshes_until_finished(processes, browser, user):
    from jobs import services
    from tests.factories import make_processing_job

    base = f"http://127.0.0.1:{processes.start_daphne()}"
    job = make_processing_job(owner=user, job_type="image_generation")
    context = browser.new_context(base_url=base, java_script_enabled=False, viewport={"width": 375, "height": 800})
    page = context.new_page()
    log_in(page, "author")
    page.goto(f"/jobs/{job.pk}/")
    assert page.locator('[data-field="percent"]').inner_text() == "0.0 %"

    # The worker's progress reaches the page through the meta refresh alone.
    services.job_report_progress(job_id=job.pk, progress=37.0, stage="Generating images")
    page.locator('[data-field="percent"]').filter(has_text="37.0 %").wait_for(timeout=10_000)
    assert page.locator('[data-field="stage"]').inner_text() == "Generating images"
    services.job_fail(job_id=job.pk, error_message="The renderer ran out of memory")
    page.locator('[data-field="status"]').filter(has_text="failed").wait_for(timeout=10_000)
    assert "ran out of memory" in page.locator('[data-field="error"]').inner_text()
    assert page.locator('meta[http-equiv="refresh"]').count() == 0
    assert page.get_by_role("button", name="Retry job").is_visible()
    screenshot(page, "no-javascript-375")
    context.close()


def test_browser__full_video_player_gets_a_captions_track_once_captions_exist(live, browser, user):
    from jobs import services
    from tests.processes import wait_until

    _, base = live
    project = make_project(owner=user, name="Captioned film", script=SHORT_SCRIPT)
    film = services.job_create(project=project, job_type="full_video", params={"width": 320, "height": 180, "fps": 10})
    wait_until(lambda: GenerationJob.objects.get(pk=film.pk).status == states.COMPLETED, 120,
               message="the full video to complete")
    page = new_page(browser, base)
    log_in(page, "author")
    page.goto(f"/jobs/{film.pk}/")
    page.locator("video").wait_for()
    assert page.locator("video track").count() == 0  # no captions yet

    # The captions form on the project page offers the finished film; the job runs on the worker.
    page.goto(f"/projects/{project.pk}/")
    options = page.locator("#start-captions select[name='captions-source_job_id'] option")
    assert options.count() == 2 and options.nth(1).get_attribute("value") == str(film.pk)
    captions_id = start_job_from_project_page(page, "captions", source_job_id=str(film.pk))
    page.locator('[data-field="status"]').filter(has_text="completed").wait_for(timeout=120_000)
    assert sorted(page.locator(".downloads a").all_inner_texts()) == ["captions.vtt", "video.mp4"]

    # The film's page now plays its video with the captions track, which the browser loads and parses.
    page.goto(f"/jobs/{film.pk}/")
    track = page.locator("video track[kind='captions']")
    assert track.get_attribute("src") == f"/api/jobs/{captions_id}/artifacts/a1/captions.vtt"
    assert track.get_attribute("srclang") == "en"
    page.wait_for_function("() => { const t = document.querySelector('video track'); "
                           "return t.readyState === 2 && t.track.cues && t.track.cues.length >= 4; }",
                           timeout=15_000)
    first_cue = page.evaluate("document.querySelector('video track').track.cues[0].text")
    assert first_cue == "The city wakes up."
    screenshot(page, "full-video-captions")
