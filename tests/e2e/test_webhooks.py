"""Webhooks end to end: real worker processes deliver to a real HTTP receiver on a loopback port."""
from __future__ import annotations

import json

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from jobs import queues
from tests.e2e.webhook_receiver import WebhookReceiver
from tests.factories import make_project, make_user
from tests.processes import wait_until
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.slow

JOB_QUEUES = ",".join(name for name in queues.ALL if name != queues.WEBHOOKS)
# Short backoff so retries happen within a test: 0.5 s, 1 s, 2 s, 2 s, ...
FAST_RETRIES = {"WEBHOOKS_ALLOW_PRIVATE": "1", "WEBHOOKS_RETRY_BASE_S": "0.5", "WEBHOOKS_RETRY_FACTOR": "2",
                "WEBHOOKS_RETRY_MAX_S": "2", "WEBHOOKS_TIMEOUT_S": "2", "WEBHOOKS_MAX_ATTEMPTS": "30"}


@pytest.fixture
def allow_private(settings):
    """The test process (the API) accepts loopback receivers, as the workers do with FAST_RETRIES."""
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOW_PRIVATE": True}


@pytest.fixture
def receiver():
    made: list[WebhookReceiver] = []

    def make(**kwargs: object) -> WebhookReceiver:
        made.append(WebhookReceiver(**kwargs))
        return made[-1]

    yield make
    for one in made:
        one.stop()


def _client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def _create_job(client: APIClient, user, url: str, events: list[str]) -> dict:
    project = make_project(owner=user)
    response = client.post("/api/jobs/", {"project_id": str(project.pk), "job_type": "image_generation",
                                          "params": {"width": 128, "height": 96}, "webhook_url": url,
                                          "webhook_events_filter": events}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _finished(client: APIClient, job_id: str) -> dict | None:
    body = client.get(f"/api/jobs/{job_id}/").json()
    return body if body["status"] in ("completed", "failed", "cancelled") else None


def _all_sent(job_id: str) -> bool:
    """Every delivery of the finished job sent or given up, the final one included: its row is written just
    after the completion commits (webhooks/producer.py), so a test can see the job finished before it exists."""
    rows = list(WebhookDelivery.objects.filter(job_id=job_id))
    return (any(row.event == "completed" for row in rows)
            and all(row.state != WebhookDelivery.PENDING for row in rows))


def test_webhooks__deliveries_are_signed_in_seq_order_and_verify_with_the_reference_verifier(
        processes, allow_private, receiver):
    # given a job-queue worker, a separate webhooks worker, a receiver, and a user who rotated the secret
    processes.start_worker("jobs", queues=JOB_QUEUES, concurrency=1, wait=False, **FAST_RETRIES)
    processes.start_worker("hooks", queues="webhooks", concurrency=2, wait=False, **FAST_RETRIES)
    processes.wait_ready()
    hook = receiver().start()
    user = make_user()
    client = _client(user)
    old_secret = client.get("/api/webhooks/secret/").json()["secret"]
    new_secret = client.post("/api/webhooks/secret/rotate/").json()["secret"]
    assert old_secret.startswith("whsec_") and new_secret.startswith("whsec_") and old_secret != new_secret
    assert client.get("/api/webhooks/secret/").json()["secret"] == new_secret

    # when a job asks for start, progress and completed events
    job = _create_job(client, user, hook.url, ["completed", "start", "progress"])
    assert job["webhook_url"] == hook.url and job["webhook_events_filter"] == ["start", "progress", "completed"]
    final = wait_until(lambda: _finished(client, job["id"]), timeout=120, message="the job to finish")
    wait_until(lambda: _all_sent(job["id"]), timeout=60, message="every delivery to be sent")

    # then every delivery verifies with either secret (both signatures are sent during the overlap)
    got = hook.snapshot()
    assert len(got) >= 2, processes.log("hooks")[-3000:]
    bodies = []
    for request in got:
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        for secret in (old_secret, new_secret):
            bodies.append(Webhook(secret).verify(request.body, request.headers))
    bodies = bodies[::2]
    # and they came in seq order: job.start first, job.completed (the final job JSON) last
    seqs = [body["data"]["seq"] for body in bodies]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert bodies[0]["type"] == "job.start" and bodies[-1]["type"] == "job.completed"
    assert {body["type"] for body in bodies[1:-1]} <= {"job.progress"}
    assert bodies[-1]["data"]["status"] == final["status"] == "completed"
    assert bodies[-1]["data"]["result"] == final["result"] and bodies[-1]["data"]["id"] == job["id"]
    # and progress deliveries of the job are at least a second apart
    progress_times = [row.created_at for row in WebhookDelivery.objects.filter(job_id=job["id"], event="progress")]
    assert all((b - a).total_seconds() >= 0.9 for a, b in zip(progress_times, progress_times[1:]))
    # and the delivery log lists them for the owner only
    log = client.get(f"/api/jobs/{job['id']}/deliveries/").json()
    assert log["count"] == len(got)
    assert [row["webhook_id"] for row in log["results"]] == [r.headers["webhook-id"] for r in got]
    assert all(row["status_code"] == 200 and row["attempt"] == 1 for row in log["results"])
    assert _client(make_user()).get(f"/api/jobs/{job['id']}/deliveries/").status_code == 404


def test_webhooks__a_receiver_answering_500_twice_gets_the_same_webhook_id_three_times(
        processes, allow_private, receiver):
    # given a receiver that fails twice, then accepts
    processes.start_worker("jobs", queues=JOB_QUEUES, concurrency=1, wait=False, **FAST_RETRIES)
    processes.start_worker("hooks", queues="webhooks", concurrency=1, wait=False, **FAST_RETRIES)
    processes.wait_ready()
    hook = receiver(answers=[500, 500]).start()
    user = make_user()
    client = _client(user)

    # when a job completes
    job = _create_job(client, user, hook.url, ["completed"])
    wait_until(lambda: _finished(client, job["id"]), timeout=120, message="the job to finish")
    wait_until(lambda: _all_sent(job["id"]), timeout=60, message="the delivery to be sent")

    # then the one delivery was attempted three times with one webhook-id, and the log says so
    got = hook.snapshot()
    assert len(got) == 3, [r.headers for r in got]
    assert len({r.headers["webhook-id"] for r in got}) == 1
    assert len({r.body for r in got}) == 1
    secret = client.get("/api/webhooks/secret/").json()["secret"]
    assert Webhook(secret).verify(got[-1].body, got[-1].headers)["type"] == "job.completed"
    [row] = client.get(f"/api/jobs/{job['id']}/deliveries/").json()["results"]
    assert row["attempt"] == 3 and row["status_code"] == 200 and row["next_attempt_at"] is None
    assert row["webhook_id"] == got[0].headers["webhook-id"] and row["event"] == "completed"


def test_webhooks__a_receiver_that_was_down_gets_everything_in_seq_order_when_back(
        processes, allow_private, receiver):
    # given a receiver that is down while a job runs
    processes.start_worker("jobs", queues=JOB_QUEUES, concurrency=1, wait=False, **FAST_RETRIES)
    processes.start_worker("hooks", queues="webhooks", concurrency=2, wait=False, **FAST_RETRIES)
    processes.wait_ready()
    hook = receiver()
    user = make_user()
    client = _client(user)
    job = _create_job(client, user, hook.url, ["start", "progress", "completed"])
    wait_until(lambda: _finished(client, job["id"]), timeout=120, message="the job to finish")
    wait_until(lambda: WebhookDelivery.objects.filter(job_id=job["id"], attempt__gte=2).exists(), timeout=30,
               message="a failed retry")
    assert WebhookDelivery.objects.filter(job_id=job["id"], state=WebhookDelivery.PENDING).count() >= 2

    # when it comes back on the same port
    hook.start()
    wait_until(lambda: _all_sent(job["id"]), timeout=60, message="every delivery to be sent")

    # then it received every delivery, once each, in seq order
    rows = list(WebhookDelivery.objects.filter(job_id=job["id"]).order_by("seq"))
    assert all(row.state == WebhookDelivery.DELIVERED for row in rows)
    got = [json.loads(r.body) for r in hook.snapshot()]
    assert [body["data"]["seq"] for body in got] == [row.seq for row in rows]
    assert got[0]["type"] == "job.start" and got[-1]["type"] == "job.completed"


def test_webhooks__a_receiver_that_never_answers_does_not_hold_up_jobs(processes, allow_private, receiver):
    # given a receiver that accepts connections and never answers
    processes.start_worker("jobs", queues=JOB_QUEUES, concurrency=1, wait=False, **FAST_RETRIES)
    processes.start_worker("hooks", queues="webhooks", concurrency=1, wait=False, **FAST_RETRIES)
    processes.wait_ready()
    hook = receiver(hang=True).start()
    user = make_user()
    client = _client(user)

    # when two jobs with every event run one after the other
    first = _create_job(client, user, hook.url, ["start", "progress", "completed"])
    wait_until(lambda: _finished(client, first["id"]), timeout=120, message="the first job to finish")
    second = _create_job(client, user, hook.url, ["start", "progress", "completed"])
    done = wait_until(lambda: _finished(client, second["id"]), timeout=120, message="the second job to finish")

    # then both completed while their deliveries still wait on the receiver, which answered none
    assert done["status"] == "completed"
    assert hook.hung >= 1 and hook.snapshot() == []
    assert not WebhookDelivery.objects.filter(state=WebhookDelivery.DELIVERED).exists()
    # and the attempts that timed out are logged as such
    wait_until(lambda: WebhookDelivery.objects.filter(job_id=first["id"], attempt__gte=1).exists(), timeout=30,
               message="a timed-out attempt")
    row = WebhookDelivery.objects.filter(job_id=first["id"], attempt__gte=1).first()
    assert row.status_code is None and "timed out" in row.error.lower(), row.error


def test_webhooks__a_name_resolving_to_loopback_is_refused_at_delivery_time(processes, allow_private, receiver):
    # given a worker that refuses private addresses, and a job whose URL was accepted at create
    processes.start_worker("jobs", queues=JOB_QUEUES, concurrency=1, wait=False, **FAST_RETRIES)
    processes.start_worker("hooks", queues="webhooks", concurrency=1, wait=False,
                           **{**FAST_RETRIES, "WEBHOOKS_ALLOW_PRIVATE": "0"})
    processes.wait_ready()
    hook = receiver().start()
    user = make_user()
    client = _client(user)
    job = _create_job(client, user, f"http://localhost:{hook.port}/in", ["completed"])

    # when its completion is delivered
    wait_until(lambda: _finished(client, job["id"]), timeout=120, message="the job to finish")
    wait_until(lambda: _all_sent(job["id"]), timeout=60, message="the delivery to be given up")

    # then the delivery was given up at once without a connection, naming the reason
    [row] = client.get(f"/api/jobs/{job['id']}/deliveries/").json()["results"]
    assert row["attempt"] == 1 and row["status_code"] is None and row["next_attempt_at"] is None
    assert "refused" in row["error"] and "loopback" in row["error"]
    assert hook.snapshot() == []
