"""/metrics: access control, scrape-time job and queue gauges, and metrics recorded by other processes."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from config.celery import app as celery_app
from config.redis_roles import RedisRole
from jobs import services, states
from jobs.plans import JOB_TYPES
from ops import metrics
from tests.factories import make_job, make_project
from tests.processes import ROOT, subprocess_env

pytestmark = pytest.mark.django_db


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
def send_stray_task():
    """Send a task nobody runs to a queue; the messages are removed again after the test."""
    import redis
    from django.conf import settings

    sent: list[tuple[str, str]] = []

    def send(queue: str, priority: int | None = None) -> None:
        result = celery_app.send_task("tests.not_a_real_task", queue=queue, routing_key=queue, priority=priority)
        sent.append((queue, result.id))

    yield send
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    for queue, task_id in sent:  # so a worker started by a later test never receives them
        for key in metrics.queue_keys(queue):
            for raw in client.lrange(key, 0, -1):
                if task_id.encode() in raw:
                    client.lrem(key, 1, raw)
    client.close()


def _scrape(client: Client, **headers: str) -> dict:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/plain")
    return _samples(response.content.decode())


def test_metrics__anonymous_is_refused_with_401(client: Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.json()["detail"]
    assert "Bearer" in response["WWW-Authenticate"]


def test_metrics__non_staff_user_is_refused_with_403(client: Client, user) -> None:
    client.force_login(user)
    response = client.get("/metrics/")
    assert response.status_code == 403
    assert b"jobs_by_status" not in response.content


@override_settings(METRICS_TOKEN="s3cret-metrics-token")
def test_metrics__bearer_token_works_and_a_wrong_one_does_not(client: Client) -> None:
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Token s3cret-metrics-token").status_code == 401
    samples = _scrape(client, HTTP_AUTHORIZATION="Bearer s3cret-metrics-token")
    assert samples[("jobs_metrics_source_up", (("source", "database"),))] == 1


@override_settings(METRICS_TOKEN="")
def test_metrics__no_token_configured_refuses_any_bearer(client: Client) -> None:
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 401


def test_metrics__post_is_not_allowed(client: Client, staff_user) -> None:
    client.force_login(staff_user)
    assert client.post("/metrics").status_code == 405


def test_metrics__staff_sees_job_counts_by_status_and_type(client: Client, staff_user) -> None:
    client.force_login(staff_user)
    key = lambda status, job_type: ("jobs_by_status", (("job_type", job_type), ("status", status)))  # noqa: E731
    before = _scrape(client)
    project = make_project()
    make_job(project=project, job_type="image_generation")
    make_job(project=project, job_type="image_generation")
    cancelled = make_job(project=project, job_type="full_video")
    services.job_cancel(job_id=cancelled.pk)

    after = _scrape(client)

    assert after[key("queued", "image_generation")] - before[key("queued", "image_generation")] == 2
    assert after[key("cancelled", "full_video")] - before[key("cancelled", "full_video")] == 1
    assert after[key("queued", "full_video")] == before[key("queued", "full_video")]
    # Every combination is present (a series that vanishes at 0 breaks alerts).
    assert sum(1 for (name, _labels) in after if name == "jobs_by_status") == len(states.STATUSES) * len(JOB_TYPES)


def test_metrics__job_counts_use_one_query(client: Client, staff_user, django_assert_max_num_queries) -> None:
    make_job(job_type="audio_generation")
    with django_assert_max_num_queries(1):
        list(metrics.JobsCollector().collect())


def test_queue_keys__match_what_the_broker_writes(send_stray_task) -> None:
    """A task sent to a queue nobody consumes lands in exactly the keys /metrics counts."""
    import redis
    from django.conf import settings

    queue = "audio_generation"
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    before = {key: client.llen(key) for key in metrics.queue_keys(queue)}
    send_stray_task(queue)
    send_stray_task(queue, priority=9)
    after = {key: client.llen(key) for key in metrics.queue_keys(queue)}
    grown = {key for key in after if after[key] > before[key]}
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    assert grown == {f"{prefix}{queue}", f"{prefix}{queue}\x06\x169"}
    client.close()


def test_metrics__queue_depth_counts_tasks_waiting_in_a_queue_without_workers(
    client: Client, staff_user, send_stray_task
) -> None:
    client.force_login(staff_user)
    queue = "image_generation"
    depth = lambda samples: samples[("jobs_queue_depth", (("queue", queue),))]  # noqa: E731
    before = _scrape(client)
    for priority in (0, 5, 9):  # priority messages live in their own Redis lists
        send_stray_task(queue, priority)

    after = _scrape(client)

    assert depth(after) - depth(before) == 3
    assert set(name for (metric, labels) in after if metric == "jobs_queue_depth" for (_, name) in labels) == {
        "video_generation", "image_generation", "audio_generation", "maintenance", "webhooks"}
    assert after[("jobs_metrics_source_up", (("source", "redis"),))] == 1


def test_metrics__redis_down_is_reported_not_raised(client: Client, staff_user, settings) -> None:
    settings.REDIS_ROLES = replace(settings.REDIS_ROLES, broker=RedisRole("broker", 0, "redis://127.0.0.1:1/0"))
    client.force_login(staff_user)
    samples = _scrape(client)
    assert samples[("jobs_metrics_source_up", (("source", "redis"),))] == 0
    assert samples[("jobs_metrics_source_up", (("source", "database"),))] == 1
    assert not any(name == "jobs_queue_depth" for (name, _) in samples)


def test_recording_functions__never_raise_on_bad_input() -> None:
    metrics.observe_queue_wait("full_video", "not a number")  # type: ignore[arg-type]
    metrics.observe_run_time(None, float("nan"))  # type: ignore[arg-type]
    metrics.count_event("")
    metrics.count_push(False)
    metrics.count_coalesced(-3)
    metrics.count_reaper_action(object())  # type: ignore[arg-type]
    metrics.count_retry("x" * 500)


def test_metrics__histograms_and_counters_recorded_in_other_processes_are_summed(
    client: Client, staff_user, tmp_path
) -> None:
    """Two separate processes record into the shared directory; /metrics shows their sum."""
    metrics_dir = tmp_path / "prometheus"
    code = textwrap.dedent("""
        import os, django
        django.setup()
        from ops import metrics
        assert metrics.MULTIPROCESS
        metrics.observe_queue_wait("full_video", 0.3)
        metrics.observe_run_time("full_video", 42.0)
        metrics.count_event("progress")
        metrics.count_push(True)
        metrics.count_coalesced(4)
        metrics.count_reaper_action("requeued")
        metrics.count_retry("full_video")
        metrics.ws_connections_inc()
        print(os.getpid())
    """)
    pids = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                              env=subprocess_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)))
        assert done.returncode == 0, done.stderr
        pids.append(int(done.stdout.split()[-1]))
    client.force_login(staff_user)

    with override_settings(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)):
        samples = _scrape(client)
        jt = (("job_type", "full_video"),)
        assert samples[("jobs_run_seconds_count", jt)] == 2
        assert samples[("jobs_run_seconds_sum", jt)] == 84.0
        assert samples[("jobs_run_seconds_bucket", (("job_type", "full_video"), ("le", "60.0")))] == 2
        assert samples[("jobs_run_seconds_bucket", (("job_type", "full_video"), ("le", "30.0")))] == 0
        assert samples[("jobs_queue_wait_seconds_count", jt)] == 2
        assert samples[("jobs_events_total", (("kind", "progress"),))] == 2
        assert samples[("realtime_pushes_total", (("result", "ok"),))] == 2
        assert samples[("realtime_coalesced_updates_total", ())] == 8
        assert samples[("jobs_reaper_actions_total", (("action", "requeued"),))] == 2
        assert samples[("jobs_retries_total", jt)] == 2
        assert samples[("realtime_websocket_connections", ())] == 2
        # The scrape-time gauges come with the recorded ones.
        assert ("jobs_metrics_source_up", (("source", "database"),)) in samples

        # A dead process's live gauge stops counting once it is marked dead; its counters stay.
        metrics.mark_process_dead(pids[0])
        samples = _scrape(client)
        assert samples[("realtime_websocket_connections", ())] == 1
        assert samples[("jobs_run_seconds_count", jt)] == 2


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_metrics__real_worker_and_daphne_record_into_the_shared_directory(processes, tmp_path) -> None:
    """A job run by a real worker and watched over a real websocket shows up in daphne's /metrics."""
    import requests

    from tests.factories import make_user
    from tests.processes import wait_until

    shared = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"), "METRICS_TOKEN": "scrape-token"}
    processes.start_worker(concurrency=1, wait=False, **shared)
    port = processes.start_daphne(wait=False, **shared)
    processes.wait_ready()

    def scrape() -> dict:
        response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10,
                                headers={"Authorization": "Bearer scrape-token"})
        assert response.status_code == 200, response.text[:300]
        return _samples(response.text)

    owner = make_user()
    job = services.job_create(project=make_project(owner=owner, script="# Scene 1\nA calm sea.\n"),
                              job_type="audio_generation", params={})
    from jobs.models import GenerationJob

    wait_until(lambda: GenerationJob.objects.get(pk=job.pk).status == "completed", 90, message="job to complete")
    jt = (("job_type", "audio_generation"),)
    samples = wait_until(lambda: (s := scrape()).get(("jobs_run_seconds_count", jt)) and s, 10,
                         message="the run time to be recorded")
    assert samples[("jobs_queue_wait_seconds_count", jt)] == 1
    assert samples[("jobs_run_seconds_count", jt)] == 1
    done = GenerationJob.objects.get(pk=job.pk)
    assert samples[("jobs_run_seconds_sum", jt)] == pytest.approx((done.completed_at - done.started_at).total_seconds())
    assert samples[("jobs_events_total", (("kind", "status"),))] == 2  # processing, completed (in the worker)
    assert samples[("realtime_pushes_total", (("result", "ok"),))] >= 2
    assert samples[("jobs_by_status", (("job_type", "audio_generation"), ("status", "completed")))] == 1
    assert samples[("realtime_websocket_connections", ())] == 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_metrics__websocket_connections_gauge_follows_open_sockets(processes, tmp_path) -> None:
    import requests
    from rest_framework.authtoken.models import Token
    from websockets.sync.client import connect

    from tests.processes import wait_until

    port = processes.start_daphne(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"), METRICS_TOKEN="tok")

    def connections() -> float:
        response = requests.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer tok"},
                                timeout=10)
        return _samples(response.text)[("realtime_websocket_connections", ())]

    job = make_job(job_type="audio_generation")
    token = Token.objects.create(user=job.project.owner)
    with connect(f"ws://127.0.0.1:{port}/ws/jobs/{job.pk}/?token={token.key}", open_timeout=10) as socket:
        assert '"status"' in socket.recv(timeout=10)  # the snapshot
        assert connections() == 1
    wait_until(lambda: connections() == 0, 10, message="the gauge to drop")


def test_metrics__a_pool_child_shutting_down_leaves_no_live_gauge_file(tmp_path) -> None:
    """Celery sends worker_process_shutdown in each pool child as it exits (max-tasks-per-child, scaling
    down): its live gauges must stop counting, its counters must not."""
    from celery.signals import worker_process_shutdown

    # given the metric files a pool child of this host left: a live gauge and a counter
    directory = tmp_path / "prometheus"
    directory.mkdir()
    child = f"{metrics._HOST}-999999"
    live, counter = directory / f"gauge_livesum_{child}.db", directory / f"counter_{child}.db"
    live.write_bytes(b""), counter.write_bytes(b"")
    # when Celery signals that the child shuts down
    with override_settings(PROMETHEUS_MULTIPROC_DIR=str(directory)):
        worker_process_shutdown.send(sender=None, pid=999999, exitcode=0)
    # then its live gauge file is gone and its counter file stays
    assert not live.exists() and counter.exists()
