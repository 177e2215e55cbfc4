"""The staff admin: changelists, change forms, bulk cancel/retry through the service, login required."""
from __future__ import annotations

import re

import pytest
from django.urls import reverse

from jobs import services
from jobs.models import GenerationJob, SceneCheckpoint, UserJobLimit
from tests.factories import make_job, make_processing_job, make_project, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_admin__anonymous_is_sent_to_login(client) -> None:
    response = client.get(reverse("admin:jobs_generationjob_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_admin__job_changelist_filters_search_and_change_form(staff_client) -> None:
    job = make_processing_job()
    services.job_report_progress(job_id=job.pk, progress=12.5, stage="Generating images (1/2)")
    url = reverse("admin:jobs_generationjob_changelist")
    page = staff_client.get(url)
    assert page.status_code == 200 and str(job.pk) in page.content.decode()
    assert staff_client.get(url, {"status__exact": "processing"}).status_code == 200
    found = staff_client.get(url, {"q": job.project.name})
    assert str(job.pk) in found.content.decode()
    change = staff_client.get(reverse("admin:jobs_generationjob_change", args=[job.pk]))
    body = change.content.decode()
    assert change.status_code == 200 and "Generating images (1/2)" in body and "Started" in body


def test_admin__project_and_celery_admins_are_there(staff_client) -> None:
    make_job()
    for name in ("admin:projects_project_changelist", "admin:django_celery_results_taskresult_changelist",
                 "admin:django_celery_beat_periodictask_changelist"):
        assert staff_client.get(reverse(name)).status_code == 200


def test_admin__bulk_cancel_and_retry_report_counts(staff_client) -> None:
    running = make_processing_job()
    queued = make_job()
    finished = make_processing_job()
    services.job_complete(job_id=finished.pk, result={})
    url = reverse("admin:jobs_generationjob_changelist")
    ids = [str(running.pk), str(queued.pk), str(finished.pk)]
    response = staff_client.post(url, {"action": "cancel_selected", "_selected_action": ids}, follow=True)
    assert "2 jobs cancelled. 1 skipped" in response.content.decode()
    running.refresh_from_db(), queued.refresh_from_db(), finished.refresh_from_db()
    assert (running.status, queued.status, finished.status) == ("cancelled", "cancelled", "completed")
    response = staff_client.post(url, {"action": "retry_selected", "_selected_action": ids}, follow=True)
    assert "2 jobs re-queued. 1 skipped" in response.content.decode()
    running.refresh_from_db()
    assert running.status == "queued" and running.attempts == 2


def test_admin__change_form_lists_events_inline_in_seq_order(staff_client) -> None:
    job = make_processing_job()
    services.job_report_progress(job_id=job.pk, progress=30, stage="Generating images (1/2)")
    services.job_fail(job_id=job.pk, error_message="renderer exploded")
    page = staff_client.get(reverse("admin:jobs_generationjob_change", args=[job.pk])).content.decode()
    body = page[page.index('id="events-group"'):]  # the inline, not the job's own read-only fields above it
    positions = [body.index(text) for text in ("Job created", "Started", "Generating images (1/2)", "renderer exploded")]
    assert positions == sorted(positions)


def test_admin__search_by_owner_and_celery_task_id(staff_client) -> None:
    job, other = make_job(), make_job()
    services.job_mark_dispatched(job_id=job.pk, task_id="celery-task-abc123")
    url = reverse("admin:jobs_generationjob_changelist")
    for query in (job.project.owner.username, "celery-task-abc123", str(job.pk)):
        body = staff_client.get(url, {"q": query}).content.decode()
        assert str(job.pk) in body and str(other.pk) not in body, query


def test_admin__event_inline_shows_status_changes_and_each_stage_start_not_every_tick(staff_client) -> None:
    job = make_processing_job(job_type="full_video")
    for step in range(1, 201):  # 200 progress events over two stage texts
        stage = "Generating images (1/2)" if step <= 100 else "Generating images (2/2)"
        services.job_report_progress(job_id=job.pk, progress=step * 0.4, stage=stage)
    services.job_complete(job_id=job.pk, result={})
    page = staff_client.get(reverse("admin:jobs_generationjob_change", args=[job.pk])).content.decode()
    body = page[page.index('id="events-group"'):]
    assert body.count('class="form-row') == 5  # created, started, two stage starts, completed
    assert "Generating images (1/2)" in body and "Generating images (2/2)" in body and "Completed" in body


def _inline_rows(page: str, group: str) -> list[dict[str, str]]:
    """Each row of an admin inline as {field: shown text}; a boolean's icon is read as its alt text."""
    body = page[page.index(f'id="{group}"'):]
    body = body[:body.index("</table>")]
    rows = []
    for row in body.split('<tr class="form-row')[1:]:
        cells = re.findall(r'<td class="field-(\w+)">\s*<p>(.*?)</p>', row, re.S)
        rows.append({name: re.sub(r'<img [^>]*alt="(\w+)"[^>]*>', r"\1", text).strip() for name, text in cells})
    return rows


def test_admin__scene_inline_shows_each_scenes_state_attempt_and_reuse(staff_client) -> None:
    # given a job on its second attempt: scene 1's image reused from the first, scene 2's rendering, and
    # scene 1's narration failed in the first attempt
    job = make_processing_job(job_type="full_video")
    for scene, kind, attempt, state, reused in ((2, "image", 2, SceneCheckpoint.RUNNING, False),
                                                (1, "audio", 1, SceneCheckpoint.FAILED, False),
                                                (1, "image", 2, SceneCheckpoint.DONE, True)):
        SceneCheckpoint.objects.create(job=job, scene=scene, kind=kind, stage=f"{kind}s", fingerprint=f"{scene}{kind}",
                                       attempt=attempt, state=state, reused=reused)
    # when staff open its change page
    page = staff_client.get(reverse("admin:jobs_generationjob_change", args=[job.pk])).content.decode()
    # then the scenes inline lists each scene in order with its state, attempt and whether it was reused
    shown = [(row["scene"], row["kind"], row["state"], row["attempt"], row["reused"])
             for row in _inline_rows(page, "scene_checkpoints-group")]
    assert shown == [("1", "audio", "Failed", "1", "False"), ("1", "image", "Done", "2", "True"),
                     ("2", "image", "Running", "2", "False")]


def test_admin__priority_actions_change_a_waiting_jobs_priority_and_skip_a_running_one(staff_client) -> None:
    # given a user allowed one job at a time: one running, one waiting for its slot
    owner = make_user()
    UserJobLimit.objects.create(user=owner, max_running=1)
    project = make_project(owner=owner)
    running = services.job_start(job_id=make_job(project=project).pk, worker="test-worker")
    waiting = make_job(project=project)
    assert GenerationJob.objects.get(pk=waiting.pk).admitted_at is None
    url = reverse("admin:jobs_generationjob_changelist")
    ids = [str(running.pk), str(waiting.pk)]
    for action, priority in (("priority_high", "high"), ("priority_low", "low")):
        # when staff set both jobs' priority
        response = staff_client.post(url, {"action": action, "_selected_action": ids}, follow=True)
        # then the waiting job's changes and the running one's stays (it was admitted already)
        assert f"1 job set to {priority} priority. 1 skipped" in response.content.decode()
        assert GenerationJob.objects.get(pk=waiting.pk).priority == priority
        assert GenerationJob.objects.get(pk=running.pk).priority == "normal"


def _staff_with(*codenames: str):
    from django.contrib.auth.models import Permission

    from tests.factories import make_user

    user = make_user()
    user.is_staff = True
    user.save()
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


def test_admin__cancel_and_retry_need_the_change_permission(client) -> None:
    # given a staff member who may only view jobs, and a queued job
    job = make_job()
    client.force_login(_staff_with("view_generationjob"))
    url = reverse("admin:jobs_generationjob_changelist")
    # when they post the cancel action
    page = client.get(url)
    client.post(url, {"action": "cancel_selected", "_selected_action": [str(job.pk)]})
    # then the actions are not offered and the job is still queued
    assert page.status_code == 200 and "cancel_selected" not in page.content.decode()
    job.refresh_from_db()
    assert job.status == "queued"
    # while one with the change permission can
    client.force_login(_staff_with("view_generationjob", "change_generationjob"))
    client.post(url, {"action": "cancel_selected", "_selected_action": [str(job.pk)]})
    job.refresh_from_db()
    assert job.status == "cancelled"


@pytest.fixture
def job_files(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"

    def make(job) -> object:
        folder = settings.MEDIA_ROOT / "jobs" / str(job.pk)
        folder.mkdir(parents=True)
        (folder / "video.mp4").write_bytes(b"mp4")
        return folder

    return make


def test_admin__deleting_a_running_job_cancels_it_then_removes_its_files(staff_client, job_files, captured_events) -> None:
    # given a running job with files
    job = make_processing_job()
    folder = job_files(job)
    # when staff delete it in the admin
    response = staff_client.post(reverse("admin:jobs_generationjob_delete", args=[job.pk]), {"post": "yes"})
    # then it was cancelled through the service (its worker is told to stop), deleted, and its files are gone
    from jobs.models import GenerationJob

    assert response.status_code == 302 and not GenerationJob.objects.filter(pk=job.pk).exists()
    assert ("cancelled", str(job.pk)) in [(e.status, e.job_id) for e in captured_events]
    assert not folder.exists()


def test_admin__deleting_a_project_or_a_user_goes_through_the_services(staff_client, job_files, captured_events) -> None:
    # given two users' running jobs with files
    from jobs.models import GenerationJob

    first, second = make_processing_job(), make_processing_job()
    folders = [job_files(first), job_files(second)]
    # when staff delete the first job's project, and the second job's owner (both with the bulk action)
    staff_client.post(reverse("admin:projects_project_changelist"),
                      {"action": "delete_selected", "_selected_action": [str(first.project_id)], "post": "yes"})
    staff_client.post(reverse("admin:auth_user_changelist"),
                      {"action": "delete_selected", "_selected_action": [str(second.project.owner_id)], "post": "yes"})
    # then both jobs were cancelled first, and nothing of them is left
    cancelled = {e.job_id for e in captured_events if e.status == "cancelled"}
    assert {str(first.pk), str(second.pk)} <= cancelled
    assert not GenerationJob.objects.filter(pk__in=[first.pk, second.pk]).exists()
    assert not any(folder.exists() for folder in folders)


def test_admin__token_keys_are_not_listed(staff_client, user) -> None:
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=user)
    page = staff_client.get(reverse("admin:accounts_apitoken_changelist"))
    assert page.status_code == 200 and user.username in page.content.decode()
    assert token.key not in page.content.decode() and f"{token.key[:4]}…" in page.content.decode()
    change = staff_client.get(reverse("admin:accounts_apitoken_change", args=[user.pk]))
    delete = staff_client.get(reverse("admin:accounts_apitoken_delete", args=[user.pk]))
    assert change.status_code == 200 and token.key not in change.content.decode()
    assert delete.status_code == 200 and token.key not in delete.content.decode()
    staff_client.post(reverse("admin:accounts_apitoken_delete", args=[user.pk]), {"post": "yes"})
    from django.contrib.admin.models import LogEntry

    assert not Token.objects.filter(pk=token.pk).exists()
    assert LogEntry.objects.exists() and not LogEntry.objects.filter(object_repr__contains=token.key).exists()
