"""The staff admin: changelists, change forms, bulk cancel/retry through the service, login required."""
from __future__ import annotations

import pytest
from django.urls import reverse

from jobs import services
from tests.factories import make_job, make_processing_job

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
