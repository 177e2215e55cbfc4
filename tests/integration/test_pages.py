"""The server-rendered pages: owner scoping, login redirects, forms with inline errors, job start/cancel."""
from __future__ import annotations

import re

import pytest
from django.urls import reverse

from jobs import plans, services, states
from jobs.models import GenerationJob
from projects.models import Project
from tests.factories import SCRIPT, make_job, make_processing_job, make_project, make_user

pytestmark = pytest.mark.django_db


def login(client, user) -> None:
    client.force_login(user)


def assert_login_redirect(response, path: str) -> None:
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert f"next={path}" in response["Location"]


# --- login / logout -------------------------------------------------------------------------------------

def test_login_page__renders_labelled_fields(client):
    response = client.get(reverse("login"))

    html = response.content.decode()
    assert response.status_code == 200
    assert '<label for="id_username">' in html
    assert '<label for="id_password">' in html


def test_login_page__wrong_password_shows_error(client, user):
    response = client.post(reverse("login"), {"username": user.username, "password": "nope"})

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_base_nav__admin_link_only_for_staff(client, user, staff_user):
    login(client, user)
    assert reverse("admin:index") not in _nav(client.get("/").content.decode())

    login(client, staff_user)
    assert reverse("admin:index") in _nav(client.get("/").content.decode())


def _nav(html: str) -> str:
    return html.split('<nav aria-label="Account"', 1)[1].split("</nav>", 1)[0]


def test_logout__post_logs_out(client, user):
    login(client, user)

    response = client.post(reverse("logout"))

    assert response.status_code == 302
    assert_login_redirect(client.get("/"), "/")


# --- / (project list) ----------------------------------------------------------------------------------

def test_project_list__anonymous_redirects_to_login(client):
    assert_login_redirect(client.get("/"), "/")


def test_project_list__owner_sees_own_projects_newest_first_with_latest_status(client, user, other_user):
    old = make_project(owner=user, name="Old project")
    new = make_project(owner=user, name="New project")
    make_project(owner=other_user, name="Someone else's")
    make_job(project=old)
    latest = make_processing_job(project=old)
    login(client, user)

    response = client.get("/")

    html = response.content.decode()
    assert response.status_code == 200
    assert html.index("New project") < html.index("Old project")
    assert "Someone else" not in html
    assert reverse("job-detail", kwargs={"job_id": latest.pk}) in html
    assert 'data-field="latest-status">processing<' in html
    assert reverse("project-detail", kwargs={"project_id": new.pk}) in html


def test_project_list__query_count_does_not_grow_with_projects(client, user, django_assert_max_num_queries):
    login(client, user)
    make_job(project=make_project(owner=user))
    client.get("/")  # warm up the session and content types
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one:
        client.get("/")
    for _ in range(5):
        make_job(project=make_project(owner=user))

    with django_assert_max_num_queries(len(one.captured_queries)):
        response = client.get("/")

    assert response.content.decode().count('data-field="latest-status"') == 6


def test_project_list__create_project_redirects_to_it(client, user):
    login(client, user)

    response = client.post("/", {"name": "  My film ", "script": SCRIPT})

    project = Project.objects.get(owner=user)
    assert project.name == "My film"
    assert response.status_code == 302
    assert response["Location"] == reverse("project-detail", kwargs={"project_id": project.pk})


def test_project_list__missing_fields_show_inline_errors(client, user):
    login(client, user)

    response = client.post("/", {"name": "", "script": ""})

    html = response.content.decode()
    assert response.status_code == 200
    assert Project.objects.count() == 0
    assert html.count("This field is required.") == 2
    assert 'id="id_name_error"' in html and 'id="id_script_error"' in html


def test_project_list__unusable_script_shows_the_pipeline_reason(client, user):
    login(client, user)
    too_many_scenes = "\n\n".join(f"# Scene {i}\nText {i}." for i in range(1, 260))

    response = client.post("/", {"name": "Long", "script": too_many_scenes})

    assert response.status_code == 200
    assert "The script has 259 scenes; the maximum is 200." in response.content.decode()
    assert Project.objects.count() == 0


def test_project_list__blank_script_is_rejected(client, user):
    login(client, user)

    response = client.post("/", {"name": "Blank", "script": "   \n  "})

    assert "The script is empty." in response.content.decode()


# --- /projects/<id>/ -----------------------------------------------------------------------------------

def test_project_detail__owner_sees_script_jobs_and_start_forms(client, user):
    project = make_project(owner=user, name="Film")
    job = make_job(project=project, job_type="audio_generation")
    login(client, user)

    response = client.get(reverse("project-detail", kwargs={"project_id": project.pk}))

    html = response.content.decode()
    assert response.status_code == 200
    assert f'data-job-id="{job.pk}"' in html
    assert 'role="progressbar"' in html and 'aria-valuenow="0.0"' in html
    assert "A quiet morning in the city." in html
    for job_type in plans.JOB_TYPES:
        assert f'name="job_type" value="{job_type}"' in html
    # Every control has a label.
    for control_id in re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', html):
        assert f'<label for="{control_id}">' in html, control_id


def test_project_detail__other_users_project_is_404(client, user, other_user):
    project = make_project(owner=other_user)
    login(client, user)

    assert client.get(reverse("project-detail", kwargs={"project_id": project.pk})).status_code == 404
    response = client.post(reverse("project-detail", kwargs={"project_id": project.pk}),
                           {"action": "start_job", "job_type": "image_generation"})
    assert response.status_code == 404
    assert GenerationJob.objects.count() == 0


def test_project_detail__unknown_project_is_404(client, user):
    login(client, user)

    assert client.get("/projects/00000000-0000-0000-0000-000000000000/").status_code == 404


def test_project_detail__anonymous_redirects_to_login(client, user):
    project = make_project(owner=user)
    path = reverse("project-detail", kwargs={"project_id": project.pk})

    assert_login_redirect(client.get(path), path)


def test_project_detail__save_script(client, user):
    project = make_project(owner=user)
    login(client, user)

    response = client.post(reverse("project-detail", kwargs={"project_id": project.pk}),
                           {"action": "save_script", "script": "# One\nHello."})

    project.refresh_from_db()
    assert response.status_code == 302
    assert project.script == "# One\nHello."


def test_project_detail__empty_script_shows_error_and_keeps_old_one(client, user):
    project = make_project(owner=user)
    login(client, user)

    response = client.post(reverse("project-detail", kwargs={"project_id": project.pk}),
                           {"action": "save_script", "script": ""})

    project.refresh_from_db()
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert project.script == SCRIPT


def test_project_detail__start_job_redirects_to_its_page(client, user):
    project = make_project(owner=user)
    login(client, user)

    response = client.post(reverse("project-detail", kwargs={"project_id": project.pk}), {
        "action": "start_job", "job_type": "full_video",
        "full_video-width": "320", "full_video-height": "240", "full_video-voice": "en",
        "full_video-rate_wpm": "200", "full_video-fps": "12", "full_video-max_scenes": "10",
    })

    job = GenerationJob.objects.get(project=project)
    assert response.status_code == 302
    assert response["Location"] == reverse("job-detail", kwargs={"job_id": job.pk})
    assert job.status == states.QUEUED
    assert job.params == {"width": 320, "height": 240, "voice": "en", "rate_wpm": 200, "fps": 12, "max_scenes": 10}


def test_project_detail__start_job_with_odd_width_shows_the_service_error(client, user):
    project = make_project(owner=user)
    login(client, user)

    response = client.post(reverse("project-detail", kwargs={"project_id": project.pk}), {
        "action": "start_job", "job_type": "image_generation",
        "image_generation-width": "321", "image_generation-height": "240", "image_generation-max_scenes": "5",
    })

    html = response.content.decode()
    assert response.status_code == 200
    assert GenerationJob.objects.count() == 0
    assert "must be an even number" in html
    assert 'id="id_image_generation-width_error"' in html


def test_project_detail__start_job_out_of_range_shows_field_error(client, user):
    project = make_project(owner=user)
    login(client, user)

    response = client.post(reverse("project-detail", kwargs={"project_id": project.pk}), {
        "action": "start_job", "job_type": "audio_generation",
        "audio_generation-voice": "klingon", "audio_generation-rate_wpm": "9999", "audio_generation-max_scenes": "5",
    })

    html = response.content.decode()
    assert GenerationJob.objects.count() == 0
    assert "Select a valid choice. klingon is not one of the available choices." in html
    assert "Ensure this value is less than or equal to 300." in html


def test_project_detail__start_job_with_empty_script_shows_script_error(client, user):
    project = make_project(owner=user, script="")
    login(client, user)

    response = client.post(reverse("project-detail", kwargs={"project_id": project.pk}), {
        "action": "start_job", "job_type": "audio_generation",
        "audio_generation-voice": "en", "audio_generation-rate_wpm": "150", "audio_generation-max_scenes": "5",
    })

    assert GenerationJob.objects.count() == 0
    assert "Script: is empty" in response.content.decode()


# --- /jobs/<id>/ ---------------------------------------------------------------------------------------

def job_path(job: GenerationJob) -> str:
    return reverse("job-detail", kwargs={"job_id": job.pk})


def test_job_detail__unfinished_job_shows_progress_and_noscript_refresh(client, user):
    job = make_processing_job(owner=user, job_type="full_video")
    services.job_report_progress(job_id=job.pk, progress=42.5, stage="Generating images")
    login(client, user)

    response = client.get(job_path(job))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'role="progressbar"' in html
    assert 'aria-valuenow="42.5"' in html and 'aria-valuemin="0"' in html and 'aria-valuemax="100"' in html
    assert "42.5 %" in html
    assert "Generating images" in html
    assert 'aria-live="polite"' in html
    assert re.search(r'<noscript><meta http-equiv="refresh" content="\d+"></noscript>', html)
    assert 'value="cancel" class="button button--danger" data-action="cancel">' in html
    assert 'data-action="retry" hidden>' in html
    # The timeline lists the status changes and the stage change.
    timeline = html.split('id="timeline"', 1)[1].split("</ol>", 1)[0]
    assert timeline.count("<li") == 3  # created, started, "Generating images"


def test_job_detail__timeline_lists_each_stage_once_per_attempt(client, user):
    job = make_processing_job(owner=user, job_type="full_video")
    for progress, stage in [(5, "Generating images (1/4)"), (10, "Generating narration (1/4)"),
                            (15, "Generating images (2/4)"), (20, "Generating narration (2/4)")]:
        services.job_report_progress(job_id=job.pk, progress=progress, stage=stage)
    login(client, user)

    html = client.get(job_path(job)).content.decode()

    timeline = html.split('id="timeline"', 1)[1].split("</ol>", 1)[0]
    assert timeline.count("<li") == 4
    assert timeline.count('data-stage="Generating images"') == 1
    assert timeline.count('data-stage="Generating narration"') == 1
    assert "(2/4)" not in timeline


def test_job_detail__completed_job_shows_media_and_no_refresh(client, user):
    job = make_processing_job(owner=user, job_type="full_video")
    services.job_complete(job_id=job.pk, result={"artifacts": [
        {"kind": "video", "path": "video/final.mp4", "bytes": 2048, "content_type": "video/mp4"},
        {"kind": "image", "path": "images/scene_001.png", "bytes": 100, "content_type": "image/png"},
        {"kind": "audio", "path": "audio/narration.wav", "bytes": 300, "content_type": "audio/wav"},
    ], "scenes": 1})
    login(client, user)

    response = client.get(job_path(job))

    html = response.content.decode()
    base = f"/api/jobs/{job.pk}/artifacts/"
    assert f'<video controls preload="metadata" src="{base}video/final.mp4"' in html
    assert f'<img src="{base}images/scene_001.png"' in html
    assert f'<audio controls preload="none" src="{base}audio/narration.wav"' in html
    assert f'<a href="{base}video/final.mp4" download>final.mp4</a>' in html
    assert 'http-equiv="refresh"' not in html
    assert "100.0 %" in html


def test_job_detail__failed_job_shows_error_and_retry(client, user):
    job = make_processing_job(owner=user)
    services.job_fail(job_id=job.pk, error_message="ffmpeg exploded")
    login(client, user)

    html = client.get(job_path(job)).content.decode()

    error_box = html.split('data-field="error"', 1)[1].split("</div>", 1)[0]
    assert "ffmpeg exploded" in error_box and not error_box.startswith(" hidden")
    assert 'value="retry" class="button" data-action="retry">' in html
    assert 'http-equiv="refresh"' not in html


def test_job_detail__other_users_job_is_404(client, user, other_user):
    job = make_job(owner=other_user)
    login(client, user)

    assert client.get(job_path(job)).status_code == 404
    assert client.post(job_path(job), {"action": "cancel"}).status_code == 404
    job.refresh_from_db()
    assert job.status == states.QUEUED


def test_job_detail__anonymous_redirects_to_login(client, user):
    job = make_job(owner=user)

    assert_login_redirect(client.get(job_path(job)), job_path(job))


def test_job_detail__post_cancel_then_retry_without_javascript(client, user):
    job = make_processing_job(owner=user)
    login(client, user)

    assert client.post(job_path(job), {"action": "cancel"}).status_code == 302
    job.refresh_from_db()
    assert job.status == states.CANCELLED

    response = client.post(job_path(job), {"action": "cancel"}, follow=True)
    assert "job is cancelled; it cannot become cancelled" in response.content.decode()

    client.post(job_path(job), {"action": "retry"})
    job.refresh_from_db()
    assert (job.status, job.attempts) == (states.QUEUED, 2)


def test_pages__use_only_local_assets(client, user):
    job = make_job(owner=user)
    login(client, user)

    for path in ("/", reverse("project-detail", kwargs={"project_id": job.project_id}), job_path(job), reverse("login")):
        html = client.get(path).content.decode()
        for src in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert not src.startswith(("http:", "https:", "//")), (path, src)


def test_other_user_project_not_counted_for_latest_status(client, user):
    """A user's project list never reveals another user's jobs, even through the latest-job annotation."""
    mine = make_project(owner=user)
    theirs = make_user()
    make_job(project=make_project(owner=theirs))
    login(client, user)

    html = client.get("/").content.decode()

    assert "No jobs yet" in html
    assert str(mine.pk) in html


def test_job_detail__timeline_reads_only_status_events_and_stage_starts(client, user):
    from jobs import selectors
    from jobs.models import JobEvent
    from jobs.views import job_timeline

    job = make_processing_job(owner=user, job_type="full_video")
    for step in range(1, 301):
        part = "images" if step % 2 else "audio"
        stage = f"Generating {'images' if part == 'images' else 'narration'} ({step // 60 + 1}/5)"
        services.job_report_progress(job_id=job.pk, progress=step / 3, stage=stage, part=part)
    services.job_record_lost_worker(job_id=job.pk, attempt=1, reason="worker lost")
    services.job_start(job_id=job.pk, worker="w2")
    services.job_report_progress(job_id=job.pk, progress=50, stage="Generating images (1/5)", part="images")
    all_events = list(JobEvent.objects.filter(job=job).order_by("seq"))
    read = list(selectors.job_timeline_events(job_id=job.pk))
    assert len(all_events) > 300 and len(read) <= 20
    assert job_timeline(read) == job_timeline(all_events)  # the same story from far fewer rows
    login(client, user)
    html = client.get(job_path(job)).content.decode()
    timeline = html.split('id="timeline"', 1)[1].split("</ol>", 1)[0]
    assert timeline.count("<li") == len(job_timeline(all_events))
