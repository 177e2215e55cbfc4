"""Admission and the surfaces around it, against the real database and Redis (no worker runs: capacity is
announced the way a worker announces it, and the jobs' messages go to the real broker)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs import admission, capacity, deadlines, leases, services, states
from jobs.display import queue_text
from jobs.models import GenerationJob, UserJobLimit
from ops import metrics
from tests.factories import make_job, make_processing_job, make_project, make_user
from tests.integration.api.conftest import token_client

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = "image_generation"


@pytest.fixture
def client_for():
    return token_client


@pytest.fixture(autouse=True)
def no_workers(settings, monkeypatch):
    """No worker announced (capacity unknown) and the contract's default limit, unless a test says so;
    positions recomputed at every pass (not at most every 0.25 s), so a test can read them at once."""
    from jobs import queue_positions

    monkeypatch.setattr(queue_positions, "REFRESH_MIN_INTERVAL_S", 0)
    leases.client().delete(capacity._key())
    settings.JOBS = {**settings.JOBS, "MAX_RUNNING_PER_USER": 2, "ADMISSION_HEADROOM": 0}
    yield
    leases.client().delete(capacity._key())


def jobs_of(user, n: int, **fields) -> list[GenerationJob]:
    project = make_project(owner=user)
    return [services.job_create(project=project, job_type=QUEUE, params={}, **fields) for _ in range(n)]


def fresh(job) -> GenerationJob:
    return GenerationJob.objects.get(pk=job.pk)


def test_admission__a_user_runs_at_most_their_limit_and_the_rest_wait_in_line():
    jobs = jobs_of(make_user(), 4)
    rows = [fresh(job) for job in jobs]
    assert [bool(job.admitted_at) for job in rows] == [True, True, False, False]
    assert [job.queue_position for job in rows] == [None, None, 1, 2]
    assert rows[2].celery_task_id == "" and rows[0].celery_task_id  # waiting jobs have no message

    services.job_cancel(job_id=jobs[0].pk)  # a slot frees: the next one goes, the last moves up

    assert fresh(jobs[2]).admitted_at is not None and fresh(jobs[2]).celery_task_id
    assert fresh(jobs[3]).queue_position == 1


def test_admission__staff_override_and_no_limit(settings):
    limited, unlimited = make_user(), make_user()
    UserJobLimit.objects.create(user=limited, max_running=1)
    UserJobLimit.objects.create(user=unlimited, max_running=0)
    assert sum(bool(fresh(j).admitted_at) for j in jobs_of(limited, 3)) == 1
    assert sum(bool(fresh(j).admitted_at) for j in jobs_of(unlimited, 5)) == 5


def test_admission__announced_worker_slots_bound_every_user_together():
    capacity.announce("w1@test", [QUEUE], 2)
    first = jobs_of(make_user(), 3)
    second = jobs_of(make_user(), 1)
    assert sum(bool(fresh(j).admitted_at) for j in first + second) == 2
    # The second user's job is next: their start tag is the clock, the first user's is two turns ahead.
    assert fresh(second[0]).queue_position == 1 and fresh(first[2]).queue_position == 2
    services.job_complete(job_id=services.job_start(job_id=first[0].pk).pk)
    assert fresh(second[0]).admitted_at is not None and fresh(first[2]).admitted_at is None


def test_admission__headroom_lets_each_pool_process_have_one_job_waiting_in_the_broker(settings):
    settings.JOBS = {**settings.JOBS, "ADMISSION_HEADROOM": 1}
    capacity.announce("w1@test", [QUEUE], 2)
    jobs = jobs_of(make_user(), 3) + jobs_of(make_user(), 3)
    assert sum(bool(fresh(j).admitted_at) for j in jobs) == 4  # 2 processes x (1 running + 1 waiting)


def test_admission__a_queue_no_live_worker_consumes_gets_nothing():
    capacity.announce("w1@test", ["audio_generation"], 4)
    job = jobs_of(make_user(), 1)[0]
    assert fresh(job).admitted_at is None and fresh(job).queue_position == 1


def test_admission__priority_goes_first_within_one_user_and_staff_can_change_it():
    capacity.announce("w1@test", [QUEUE], 1)
    user = make_user()
    running, low, normal = jobs_of(user, 1) + jobs_of(user, 1, priority="low") + jobs_of(user, 1)
    assert (fresh(normal).queue_position, fresh(low).queue_position) == (1, 2)
    services.job_set_priority(job_id=low.pk, priority="high")
    assert (fresh(low).queue_position, fresh(normal).queue_position) == (1, 2)
    with pytest.raises(services.InvalidTransition):
        services.job_set_priority(job_id=running.pk, priority="low")


def test_admission__an_expired_job_is_cancelled_and_never_sent():
    capacity.announce("w1@test", [QUEUE], 1)
    user = make_user()
    _, waiting = jobs_of(user, 1) + jobs_of(user, 1, start_timeout_s=5)
    GenerationJob.objects.filter(pk=waiting.pk).update(queued_at=timezone.now() - timedelta(seconds=6))

    report = deadlines.enforce_deadlines()

    job = fresh(waiting)
    assert report["expired"] == [str(job.pk)] and job.status == states.CANCELLED
    assert job.error_message.startswith("expired") and job.admitted_at is None and job.celery_task_id == ""


def test_admission__a_job_running_past_max_runtime_s_fails_timed_out():
    job = make_processing_job()
    GenerationJob.objects.filter(pk=job.pk).update(max_runtime_s=2, started_at=timezone.now() - timedelta(seconds=3))
    assert deadlines.enforce_deadlines()["timed_out"] == [str(job.pk)]
    job = fresh(job)
    assert job.status == states.FAILED and job.error_message.startswith("timed out after 2 s")


def test_admission__queued_cap_is_429_naming_it(client_for, settings):
    settings.JOBS = {**settings.JOBS, "MAX_QUEUED_PER_USER": 3}
    user = make_user()
    project = make_project(owner=user)
    api = client_for(user)
    answers = [api.post("/api/jobs/", {"project_id": str(project.pk), "job_type": QUEUE}, format="json")
               for _ in range(4)]
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    assert "JOBS_MAX_QUEUED_PER_USER" in answers[-1].json()


def test_admission__a_rerun_of_a_completed_job_counts_against_the_queued_cap(client_for, settings):
    # given a user at the cap (one job waiting) with a completed job
    settings.JOBS = {**settings.JOBS, "MAX_QUEUED_PER_USER": 1}
    user = make_user()
    project = make_project(owner=user)
    done = make_processing_job(project=project, job_type="full_video")
    services.job_complete(job_id=done.pk, result={"artifacts": []}, attempt=done.attempts)
    waiting = make_job(project=project)
    assert GenerationJob.objects.get(pk=waiting.pk).status == states.QUEUED
    # when the completed job is re-run from a stage, then it is refused like a create (it adds a waiting job)
    answer = client_for(user).post(f"/api/jobs/{done.pk}/retry/", {"from_stage": "parse"}, format="json")
    assert answer.status_code == 429 and "JOBS_MAX_QUEUED_PER_USER" in answer.json(), answer.content
    assert GenerationJob.objects.get(pk=done.pk).status == states.COMPLETED


@pytest.mark.parametrize("body, field", [
    ({"priority": "high"}, "priority"), ({"priority": "urgent"}, "priority"), ({"start_timeout_s": 0}, "start_timeout_s"),
    ({"max_runtime_s": "soon"}, "max_runtime_s"), ({"max_runtime_s": 10**6}, "max_runtime_s"),
])
def test_admission__bad_priority_or_deadline_is_400_naming_the_field(client_for, body, field):
    user = make_user()
    project = make_project(owner=user)
    answer = client_for(user).post("/api/jobs/", {"project_id": str(project.pk), "job_type": QUEUE, **body},
                                   format="json")
    assert answer.status_code == 400 and field in answer.json(), answer.content


def test_admission__staff_may_ask_high_and_the_job_shows_its_fields(client_for):
    staff = make_user(staff=True)
    project = make_project(owner=staff)
    answer = client_for(staff).post("/api/jobs/", {"project_id": str(project.pk), "job_type": QUEUE, "priority": "high",
                                                   "start_timeout_s": 60, "max_runtime_s": 30}, format="json")
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert (body["priority"], body["start_timeout_s"], body["max_runtime_s"]) == ("high", 60, 30)
    assert body["queue_position"] == 1  # admitted at once (nothing else waits): it starts next


def test_admission__retry_and_page_forms_count_against_the_creation_rate(client_for, client, settings):
    settings.API_JOB_CREATE_RATE = "2/min"
    user = make_user()
    failed = make_job(owner=user)
    services.job_fail(job_id=failed.pk, error_message="boom")
    api = client_for(user)
    assert api.post(f"/api/jobs/{failed.pk}/retry/").status_code == 200
    services.job_cancel(job_id=failed.pk)
    assert api.post(f"/api/jobs/{failed.pk}/retry/").status_code == 200
    services.job_cancel(job_id=failed.pk)
    assert api.post(f"/api/jobs/{failed.pk}/retry/").status_code == 429
    client.force_login(user)
    page = client.post(f"/projects/{failed.project_id}/", {
        "action": "start_job", "job_type": QUEUE, f"{QUEUE}-width": "320", f"{QUEUE}-height": "240",
        f"{QUEUE}-max_scenes": "5"})
    assert page.status_code == 429 and "JOBS_CREATE_RATE" in page.content.decode()


def test_admission__pages_say_the_place_in_line(client):
    capacity.announce("w1@test", [QUEUE], 1)
    user = make_user()
    jobs = jobs_of(user, 4)
    client.force_login(user)
    assert "3rd in line" in client.get(f"/jobs/{jobs[3].pk}/").content.decode()
    assert "next in line" in client.get(f"/projects/{jobs[0].project_id}/").content.decode()
    assert queue_text(3, 130) == "3rd in line, starts in about 2 min"
    assert queue_text(1, None) == "next in line"


def test_admission__admin_shows_waiting_and_running_and_cancels_a_users_queue(client):
    capacity.announce("w1@test", [QUEUE], 1)
    flooder = make_user()
    jobs_of(flooder, 4)
    client.force_login(make_user(staff=True))
    page = client.get(reverse("admin:jobs_fair_share"))
    body = page.content.decode()
    assert page.status_code == 200 and f"{QUEUE}: 1 running of 1 slots, 3 waiting" in body and flooder.username in body
    client.post(reverse("admin:jobs_fair_share"), {"cancel_queued_of": str(flooder.pk)})
    assert not GenerationJob.objects.filter(project__owner=flooder, status=states.QUEUED).exists()


def deadlines_counted(outcome: str) -> float:
    """jobs_deadlines_total{outcome} as /metrics shows it (0 before the first one)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = metrics.render()[0].decode()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "jobs_deadlines_total" and sample.labels == {"outcome": outcome})


def test_admission__metrics_show_waiting_oldest_age_admission_wait_and_deadlines():
    capacity.announce("w1@test", [QUEUE], 1)
    jobs_of(make_user(), 3)
    text = metrics.render()[0].decode()
    assert f'jobs_waiting{{priority="normal",queue="{QUEUE}",user_class="user"}} 2.0' in text
    assert f'jobs_oldest_queued_age_seconds{{queue="{QUEUE}"}}' in text
    assert "jobs_admission_wait_seconds_bucket" in text

    # When two waiting jobs expire and a running one times out, the deadlines counter rises by as many
    # (the counter may hold earlier tests' counts: compared with its value before)
    before = {outcome: deadlines_counted(outcome) for outcome in ("expired", "timed_out")}
    impatient = jobs_of(make_user(), 2, start_timeout_s=5)
    GenerationJob.objects.filter(pk__in=[job.pk for job in impatient]).update(
        queued_at=timezone.now() - timedelta(seconds=6))
    running = make_processing_job()
    GenerationJob.objects.filter(pk=running.pk).update(max_runtime_s=2, started_at=timezone.now() - timedelta(seconds=3))
    report = deadlines.enforce_deadlines()

    assert sorted(report["expired"]) == sorted(str(job.pk) for job in impatient)
    assert report["timed_out"] == [str(running.pk)]
    assert deadlines_counted("expired") == before["expired"] + 2
    assert deadlines_counted("timed_out") == before["timed_out"] + 1


def test_admission__concurrent_passes_admit_each_job_once():
    """Many passes at once (threads, each its own connection) never admit past the slots."""
    import threading

    from django.db import connections

    if connections["default"].vendor != "postgresql":
        pytest.skip("SQLite serialises writers anyway; the advisory lock is PostgreSQL's")
    capacity.announce("w1@test", [QUEUE], 3)
    user = make_user()
    UserJobLimit.objects.create(user=user, max_running=0)
    project = make_project(owner=user)
    for _ in range(10):
        GenerationJob.objects.create(project=project, job_type=QUEUE, queue=QUEUE, queued_at=timezone.now())

    def run() -> None:
        try:
            admission.admit()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert GenerationJob.objects.filter(admitted_at__isnull=False).count() == 3


def test_admission__a_pass_with_nothing_waiting_is_one_read(django_assert_num_queries):
    capacity.announce("w1@test", [QUEUE], 2)
    services.job_complete(job_id=services.job_start(job_id=jobs_of(make_user(), 1)[0].pk).pk)
    leases.client().delete(admission._rerun_key())
    with django_assert_num_queries(1):
        assert admission.admit() == []
    assert not leases.client().exists(admission._rerun_key())


def test_admission__a_job_cancelled_while_its_pass_decides_is_left_out(monkeypatch):
    """The pass reads, decides, then records: a cancel committed in between must win (no admission, no send)."""
    import threading

    from django.db import connections

    if connections["default"].vendor != "postgresql":
        # The SQLite pass holds the database's one write lock from its read to its record (BEGIN IMMEDIATE):
        # no cancel can commit in between (the thread's cancel waited out its 20 s busy timeout, then failed).
        pytest.skip("SQLite serialises writers: nothing commits between a pass's decision and its record")
    capacity.announce("w1@test", [QUEUE], 4)
    user = make_user()
    project = make_project(owner=user)
    waiting = [GenerationJob.objects.create(project=project, job_type=QUEUE, queue=QUEUE, queued_at=timezone.now())
               for _ in range(2)]
    decide = admission.decide

    def decide_then_cancel(*args, **kwargs):
        chosen = decide(*args, **kwargs)
        monkeypatch.setattr(admission, "decide", decide)  # once: the cancel's own pass decides plainly

        def cancel() -> None:  # another process's cancel: its own connection, committed before the record
            try:
                services.job_cancel(job_id=waiting[0].pk)
            finally:
                connections.close_all()

        thread = threading.Thread(target=cancel)
        thread.start()
        thread.join(30)
        return chosen

    monkeypatch.setattr(admission, "decide", decide_then_cancel)
    admitted = admission.admit()

    assert [item.job.pk for item in admitted] == [waiting[1].pk]
    first, second = fresh(waiting[0]), fresh(waiting[1])
    assert first.status == states.CANCELLED and first.admitted_at is None and first.celery_task_id == ""
    assert second.admitted_at is not None and second.celery_task_id


def test_admission__concurrent_creates_each_get_their_pass_or_the_holders_rerun():
    """Passes that find the lock taken leave a request instead of waiting; none may be lost: every job
    whose slot is free ends admitted without any later pass (no deadlines task runs here)."""
    import threading

    from django.db import connections

    if connections["default"].vendor != "postgresql":
        pytest.skip("SQLite serialises writers anyway; the advisory lock is PostgreSQL's")
    capacity.announce("w1@test", [QUEUE], 16)
    users = [make_user() for _ in range(4)]
    for user in users:
        UserJobLimit.objects.create(user=user, max_running=0)
    projects = [make_project(owner=user) for user in users]
    start = threading.Barrier(12)

    def create(n: int) -> None:
        try:
            start.wait(30)
            services.job_create(project=projects[n % 4], job_type=QUEUE, params={})  # its pass runs on commit
        finally:
            connections.close_all()

    threads = [threading.Thread(target=create, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    jobs = GenerationJob.objects.filter(project__in=projects)
    assert jobs.count() == 12
    assert jobs.filter(admitted_at__isnull=True).count() == 0
    assert jobs.exclude(celery_task_id="").count() == 12
