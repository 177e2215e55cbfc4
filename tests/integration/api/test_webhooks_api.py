"""Webhooks through the API and the admin: URL checks at create, the secret, the delivery log, retention."""
from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs import services
from tests.factories import make_job, make_project, make_user
from tests.integration.api.conftest import token_client
from webhooks.models import WebhookDelivery, WebhookSecret
from webhooks.secrets import signing_secrets
from webhooks.services import deliveries_delete_old

pytestmark = pytest.mark.django_db


def _create(api, project, **fields):
    return api.post("/api/jobs/", {"project_id": str(project.pk), "job_type": "image_generation", **fields},
                    format="json")


def _delivery(job, seq: int, **fields) -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        webhook_id=f"msg_{job.pk.hex[:8]}{seq}", job=job, seq=seq, event="completed", url="https://example.com/",
        body="{}", max_attempts=9, **fields)


@pytest.mark.parametrize("url, words", [
    ("http://localhost:8000/hook", "loopback"),
    ("http://127.0.0.1/hook", "loopback"),
    ("http://[::1]:9000/", "loopback"),
    ("http://10.0.0.7/hook", "private"),
    ("http://192.168.1.20/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("ftp://example.com/hook", "http or https"),
    ("not a url", "valid URL"),
])
def test_job_create__webhook_url_to_a_refused_place_is_400_naming_the_field(api, project, url, words):
    response = _create(api, project, webhook_url=url)

    assert response.status_code == 400, response.content
    assert list(response.json()) == ["webhook_url"]
    assert words in response.json()["webhook_url"][0]


def test_job_create__webhook_events_filter_is_checked_and_normalised(api, project, settings):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOW_PRIVATE": True}
    bad = _create(api, project, webhook_url="http://localhost:9/", webhook_events_filter=["finished"])
    assert bad.status_code == 400 and "not a webhook event" in bad.json()["webhook_events_filter"][0]
    assert _create(api, project, webhook_events_filter=[]).status_code == 400

    good = _create(api, project, webhook_url="http://localhost:9/x", webhook_events_filter=["completed", "start"])

    assert good.status_code == 201, good.content
    assert good.json()["webhook_url"] == "http://localhost:9/x"
    assert good.json()["webhook_events_filter"] == ["start", "completed"]


def test_job_create__without_webhook_shows_null_url_and_default_filter(api, project):
    body = _create(api, project).json()

    assert body["webhook_url"] is None and body["webhook_events_filter"] == ["completed"]
    assert api.get(f"/api/jobs/{body['id']}/").json()["webhook_events_filter"] == ["completed"]


def test_webhook_secret__made_once_per_user_and_rotation_keeps_the_old_one_signing_for_a_day(api, user):
    # given a user's secret
    first = api.get("/api/webhooks/secret/").json()["secret"]
    assert first.startswith("whsec_") and api.get("/api/webhooks/secret").json()["secret"] == first
    assert token_client(make_user()).get("/api/webhooks/secret/").json()["secret"] != first

    # when it is rotated
    response = api.post("/api/webhooks/secret/rotate/")

    # then the new one is current and both sign for 24 hours, then only the new one
    second = response.json()["secret"]
    assert response.status_code == 200 and second != first
    assert api.get("/api/webhooks/secret/").json()["secret"] == second
    assert signing_secrets(user_id=user.pk) == [second, first]
    row = WebhookSecret.objects.get(user=user)
    assert timedelta(hours=23, minutes=59) < row.previous_valid_until - timezone.now() <= timedelta(hours=24)
    assert signing_secrets(user_id=user.pk, now=timezone.now() + timedelta(hours=24, seconds=1)) == [second]


def test_webhook_secret__anonymous_is_401(client_for):
    assert client_for(None).get("/api/webhooks/secret/").status_code == 401
    assert client_for(None).post("/api/webhooks/secret/rotate/").status_code == 401


def test_job_deliveries__lists_the_jobs_deliveries_in_seq_order_for_its_owner_only(api, project):
    job = make_job(project=project)
    later = _delivery(job, 5, state=WebhookDelivery.PENDING, attempt=2, status_code=503, error="busy",
                      next_attempt_at=timezone.now())
    earlier = _delivery(job, 2, state=WebhookDelivery.DELIVERED, attempt=1, status_code=204)
    _delivery(make_job(), 1)  # another job's

    body = api.get(f"/api/jobs/{job.pk}/deliveries/").json()

    assert body["count"] == 2
    assert [row["webhook_id"] for row in body["results"]] == [earlier.webhook_id, later.webhook_id]
    assert set(body["results"][0]) == {"webhook_id", "event", "attempt", "status_code", "error", "created_at",
                                       "next_attempt_at"}
    assert body["results"][1]["status_code"] == 503 and body["results"][1]["error"] == "busy"
    assert token_client(make_user()).get(f"/api/jobs/{job.pk}/deliveries/").status_code == 404


def test_deliveries_delete_old__keeps_recent_rows_only(settings):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "RETENTION_DAYS": 30}
    job = make_job()
    old, new = _delivery(job, 1), _delivery(job, 2)
    WebhookDelivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))

    assert deliveries_delete_old() == 1

    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [new.pk]


def test_admin_redeliver__a_given_up_delivery_is_pending_again_with_fresh_attempts(client, staff_user):
    # given a delivery that was given up after 9 attempts
    client.force_login(staff_user)
    job = make_job(project=make_project())
    given_up = _delivery(job, 3, state=WebhookDelivery.FAILED, attempt=9, status_code=500)

    # when staff redeliver it
    response = client.post(reverse("admin:webhooks_webhookdelivery_changelist"),
                           {"action": "redeliver", "_selected_action": [given_up.pk]})

    # then it is pending again, due now, with the same webhook-id and another full set of attempts
    assert response.status_code == 302
    given_up.refresh_from_db()
    assert given_up.state == WebhookDelivery.PENDING and given_up.max_attempts == 18
    assert given_up.next_attempt_at <= timezone.now() and given_up.webhook_id.startswith("msg_")
    assert client.get(reverse("admin:webhooks_webhookdelivery_changelist")).status_code == 200


def test_job_events__only_committed_events_of_jobs_with_a_webhook_make_deliveries(transactional_db, settings):
    # given one job with a webhook for start and completed, and one without
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOW_PRIVATE": True}
    project = make_project()
    hooked = services.job_create(project=project, job_type="image_generation",
                                 webhook_url="http://localhost:9/", webhook_events_filter=["start", "completed"])
    plain = make_job(project=project)

    # when both start, report progress and are cancelled
    for job in (hooked, plain):
        services.job_start(job_id=job.pk, worker="test")
        services.job_report_progress(job_id=job.pk, progress=50, stage="Generating images")
        services.job_cancel(job_id=job.pk)

    # then only the hooked job has deliveries: start and completed (cancelled is terminal), in seq order
    rows = list(WebhookDelivery.objects.order_by("seq"))
    assert [(row.job_id, row.event) for row in rows] == [(hooked.pk, "start"), (hooked.pk, "completed")]
    assert [row.seq for row in rows] == [2, 4]
    body = json.loads(rows[1].body)
    assert body["type"] == "job.completed" and body["data"]["status"] == "cancelled" and body["data"]["seq"] == 4


def test_progress_deliveries__at_most_one_per_second_per_job_and_never_behind_a_later_one(transactional_db,
                                                                                          settings):
    # given a processing job that wants progress events
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOW_PRIVATE": True}
    job = services.job_create(project=make_project(), job_type="image_generation",
                              webhook_url="http://localhost:9/", webhook_events_filter=["progress"])
    services.job_start(job_id=job.pk, worker="test")

    # when it reports progress three times within half a second, and once more after a second
    for value in (10, 20, 30):
        services.job_report_progress(job_id=job.pk, progress=value, stage="Generating images")
        time.sleep(0.15)
    time.sleep(1.1)
    services.job_report_progress(job_id=job.pk, progress=40, stage="Generating images")

    # then two progress deliveries were made: the first report's and the last one's
    rows = list(WebhookDelivery.objects.filter(job_id=job.pk).order_by("seq"))
    assert [json.loads(row.body)["data"]["progress"] for row in rows] == [10, 40]
    # and a progress event arriving after a later event's delivery is dropped, not sent out of order
    from jobs.listeners import CommittedEvent
    from webhooks.producer import delivery_create

    late = CommittedEvent(job_id=str(job.pk), project_id=str(job.project_id), job_type=job.job_type,
                          seq=rows[-1].seq - 1, kind="progress", status="processing", previous_status="processing",
                          progress=35, current_stage="", error_message=None, result=None, attempt=1)
    assert delivery_create(event=late, name="progress", url="http://localhost:9/") is None


def test_backfill_final__a_finished_job_whose_completed_delivery_was_lost_gets_one(transactional_db, settings):
    # given a job with a webhook that failed while no listener ran (a process killed after the commit)
    from jobs.listeners import register_listener, unregister_listener
    from webhooks.producer import deliveries_backfill_final, on_event_committed

    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOW_PRIVATE": True}
    job = services.job_create(project=make_project(), job_type="image_generation",
                              webhook_url="http://localhost:9/", webhook_events_filter=["completed"])
    unregister_listener(on_event_committed)
    try:
        services.job_fail(job_id=job.pk, error_message="boom")
    finally:
        register_listener(on_event_committed)
    assert not WebhookDelivery.objects.exists()

    # when the sweep looks, first too early (the listener may be slow), then after the settle time
    assert deliveries_backfill_final(settle_s=30) == []
    made = deliveries_backfill_final(settle_s=0)

    # then the job's final status is delivered once, with the terminal event's seq
    job.refresh_from_db()
    assert made == [str(job.pk)] and deliveries_backfill_final(settle_s=0) == []
    [row] = WebhookDelivery.objects.all()
    assert row.seq == job.seq and row.event == "completed"
    assert json.loads(row.body)["data"]["status"] == "failed"
