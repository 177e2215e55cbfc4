"""Fair sharing with real worker and beat processes (jobs/admission.py): per-user limits, weighted turns,
race-free admission, lost slots coming back through the reaper, deadlines and queue positions.

Job durations come from the fake image backend (`[slow:S]` in a scene's text); every user's jobs are
image_generation jobs, so they compete for the image_generation queue's slots (the workers' pool sizes).
"""
from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

import pytest
from django.db import connections, transaction

from jobs import capacity, leases, services, states
from jobs.admission import holding_jobs
from jobs.models import GenerationJob, JobEvent
from tests.e2e.fake_backend import script
from tests.factories import make_project, make_user
from tests.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

QUEUE = "image_generation"
TINY = {"width": 64, "height": 64}
# The workers' and beat's settings; the test process (which admits on create) gets the same through `fair`.
LIMITS = {
    "JOBS_HEARTBEAT_INTERVAL_S": "0.5",
    "JOBS_STALE_AFTER_S": "3",
    "JOBS_REAPER_INTERVAL_S": "1",
    "JOBS_DEADLINES_INTERVAL_S": "1",
    "JOBS_CANCEL_GRACE_S": "1",
    "JOBS_QUEUED_REDISPATCH_AFTER_S": "30",
    "JOBS_MAX_RUNNING_PER_USER": "2",
}


def env(**overrides: object) -> dict[str, str]:
    return {**LIMITS, **{k: str(v) for k, v in overrides.items()}}


@pytest.fixture
def fair(settings):
    """This process admits too (on create), so it uses the workers' settings; no worker of an earlier
    test (a SIGKILLed one keeps its announcement for ENTRY_TTL_S) counts as capacity here."""
    leases.client().delete(capacity._key())
    settings.JOBS = {**settings.JOBS, "HEARTBEAT_INTERVAL_S": 0.5, "STALE_AFTER_S": 3.0, "REAPER_INTERVAL_S": 1.0,
                     "DEADLINES_INTERVAL_S": 1.0, "CANCEL_GRACE_S": 1.0, "QUEUED_REDISPATCH_AFTER_S": 30.0,
                     "MAX_RUNNING_PER_USER": 2}
    return settings


def limit(settings, n: int) -> dict[str, str]:
    """Set JOBS_MAX_RUNNING_PER_USER here and return the workers' environment with it."""
    settings.JOBS = {**settings.JOBS, "MAX_RUNNING_PER_USER": n}
    return env(JOBS_MAX_RUNNING_PER_USER=n)


def wait_for_slots(n: int) -> None:
    wait_until(lambda: (capacity.slots() or {}).get(QUEUE) == n, timeout=20, message=f"{n} announced slots")


def create(user, count: int, seconds: float, **fields) -> list[GenerationJob]:
    project = make_project(owner=user, script=script(f"A scene [slow:{seconds}] here."))
    return [services.job_create(project=project, job_type=QUEUE, params=TINY, **fields) for _ in range(count)]


def fresh(job: GenerationJob) -> GenerationJob:
    return GenerationJob.objects.get(pk=job.pk)


def max_overlap(jobs: list[GenerationJob]) -> int:
    """The most of these jobs that were processing at one instant (from their recorded start and end)."""
    edges = []
    for job in jobs:
        if job.started_at is not None:
            edges += [(job.started_at, 1), (job.completed_at or job.updated_at, -1)]
    running = peak = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        running += step
        peak = max(peak, running)
    return peak


class HoldingSampler(threading.Thread):
    """Samples, every 20 ms, how many slots each user holds (admitted or running jobs)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak: dict[int, int] = {}
        self.samples = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        from django.db.models import Count

        try:
            while not self.stopped.wait(0.02):
                rows = holding_jobs().values_list("project__owner_id").annotate(n=Count("pk"))
                for owner_id, n in rows.values_list("project__owner_id", "n"):
                    self.peak[owner_id] = max(self.peak.get(owner_id, 0), n)
                self.samples += 1
        finally:
            connections.close_all()

    def stop(self) -> dict[int, int]:
        self.stopped.set()
        self.join(5)
        return self.peak


def test_fair__one_users_flood_of_30_does_not_hold_back_a_second_users_job(processes, fair, backend):
    processes.start_worker(concurrency=2, SD_API_URL=backend.url, **env())
    wait_for_slots(2)
    sampler = HoldingSampler()
    sampler.start()
    flooder, other = make_user(), make_user()
    flood = create(flooder, 30, 1.0)
    wait_until(lambda: GenerationJob.objects.filter(pk__in=[j.pk for j in flood], status=states.COMPLETED).count() >= 2,
               timeout=30, message="the flood running")
    (single,) = create(other, 1, 1.0)
    wait_until(lambda: fresh(single).status == states.COMPLETED, timeout=30, message="the second user's job")
    services.jobs_cancel_queued_for_user(user_id=flooder.pk, reason="test over")
    peak = sampler.stop()

    single = fresh(single)
    ran = [fresh(job) for job in flood]
    durations = sorted((j.completed_at - j.started_at).total_seconds() for j in ran if j.status == states.COMPLETED)
    job_s = durations[len(durations) // 2]
    waited = (single.started_at - single.created_at).total_seconds()
    # One job-duration: the time until one of the flooder's two running jobs ends and frees its slot.
    assert waited <= job_s + 1.0, (waited, job_s)
    # Admitted between the second user's job being created and admitted: at most one, by a pass that read
    # the waiting jobs just before that job was committed.
    jumped_ahead = [j for j in ran if j.admitted_at and single.created_at < j.admitted_at < single.admitted_at]
    assert len(jumped_ahead) <= 1, "flood jobs admitted before the second user's job"
    assert sum(j.status == states.CANCELLED for j in ran) >= 20, "the second user waited for the whole flood"
    assert sampler.samples > 50 and peak[flooder.pk] == 2, peak  # sampled throughout: never above the limit
    assert max_overlap(ran) <= 2


def test_fair__three_priorities_share_worker_time_by_their_weights(processes, fair, backend):
    """Weights high 4 : normal 2 : low 1, so shares 4/7, 2/7, 1/7 of the worker time while all three wait;
    stated tolerance: over the first 21 jobs admitted (three rounds of 4 + 2 + 1), each user's share is
    within 0.1 of its weight's (one job of 21 is 0.05)."""
    processes.start_worker(concurrency=2, SD_API_URL=backend.url, **limit(fair, 0))
    wait_for_slots(2)
    users = {priority: make_user(staff=priority == "high") for priority in ("low", "normal", "high")}
    backlog = {"low": 8, "normal": 14, "high": 26}
    with transaction.atomic():  # one admission pass sees every backlog at once
        jobs = {p: create(users[p], backlog[p], 0.3, priority=p) for p in users}
    window = 21  # admissions while every user still waits (the low user's 8 last 56 turns)
    wait_until(lambda: GenerationJob.objects.filter(status=states.COMPLETED).count() >= window, timeout=90,
               message=f"{window} jobs done")
    for user in users.values():
        services.jobs_cancel_queued_for_user(user_id=user.pk, reason="test over")

    ran = sorted((fresh(j) for js in jobs.values() for j in js if fresh(j).admitted_at), key=lambda j: j.admitted_at)
    first = ran[:window]
    owner_priority = {user.pk: p for p, user in users.items()}
    # Every job is the same work (one 0.3 s image), so a user's share of the worker time is their share of
    # the jobs run; measured wall-clock run times would add the machine's noise (SQLite's writer lock).
    shares = {p: sum(owner_priority[j.project.owner_id] == p for j in first) / window for p in users}
    for priority, weight in (("low", 1 / 7), ("normal", 2 / 7), ("high", 4 / 7)):
        assert abs(shares[priority] - weight) <= 0.1, shares


def completed(ids: list[str]) -> int:
    return GenerationJob.objects.filter(pk__in=ids, status=states.COMPLETED).count()


def test_fair__20_concurrent_creators_and_restarting_pools_never_exceed_the_limit(processes, fair, backend):
    """Admission is serialised across the test's 20 creator threads and both workers (each admits when a
    job ends): no user above the limit at any sample, every job completes once, none is admitted twice.
    Pools restart both ways: pool children are recycled every 3 tasks, and pool-b is stopped and started
    again mid-run."""
    def start_pool(name: str, wait: bool) -> None:
        processes.start_worker(name, concurrency=2, SD_API_URL=backend.url, wait=wait,
                               extra_args=["--max-tasks-per-child", "3"], **env())

    for name in ("pool-a", "pool-b"):
        start_pool(name, wait=False)
    processes.wait_ready()
    wait_for_slots(4)
    users = [make_user() for _ in range(5)]
    projects = [make_project(owner=u, script=script("A scene [slow:0.2] here.")) for u in users]
    sampler = HoldingSampler()
    sampler.start()
    barrier = threading.Barrier(20)
    created: list[str] = []
    errors: list[BaseException] = []

    def creator(n: int) -> None:
        try:
            barrier.wait(10)
            for _ in range(2):
                job = services.job_create(project=projects[n % 5], job_type=QUEUE, params=TINY)
                created.append(str(job.pk))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=creator, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and len(created) == 40, errors

    # pool-b restarts while jobs still wait, as a deployment restarts a worker: SIGTERM to the worker alone
    # (a warm shutdown: its running tasks finish, the messages it had taken but not started go back to the
    # queue); each job must still start once, not twice nor never. pool-a carries on. (SIGTERM to the whole
    # process group would kill the pool processes mid-task: a lost worker, which the reaper recovers after
    # the lease expires, tests/e2e/test_worker_recovery.py.)
    wait_until(lambda: completed(created) >= 4, timeout=60, message="the first jobs completed")
    processes.procs["pool-b"].send_signal(signal.SIGTERM)
    processes.procs["pool-b"].wait(60)
    processes.stop("pool-b")
    first_life = processes.log("pool-b")
    start_pool("pool-b", wait=True)
    assert completed(created) < 40, "the run ended before pool-b came back: nothing left to restart into"

    wait_until(lambda: completed(created) == 40, timeout=150, message="all 40 jobs completed")
    peak = sampler.stop()

    assert sampler.samples > 50 and max(peak.values()) == 2, peak
    jobs = list(GenerationJob.objects.filter(pk__in=created))
    assert all(job.attempts == 1 and job.lost_count == 0 for job in jobs)
    starts = JobEvent.objects.filter(job__in=jobs, kind=JobEvent.STATUS, status=states.PROCESSING).count()
    assert starts == 40  # each job started exactly once
    for user in users:
        assert max_overlap([j for j in jobs if j.project.owner_id == user.pk]) <= 2
    # Nothing was sent twice, with one exception: a message pool-b's first life had taken may come back
    # after the restart, and the copy must find its job done and do nothing. So a copy comes only from
    # pool-b's first life, at most one per pool process.
    logs = processes.log("pool-a") + first_life + processes.log("pool-b")
    copies = set(re.findall(r"job (\S+): [^\n]*does nothing", logs))
    assert copies <= set(re.findall(r"job_id=(\S+)", first_life)) and len(copies) <= 2, copies
    assert "succeeded in" in first_life and "succeeded in" in processes.log("pool-b")  # both lives did work


def _worker_of(pid: int, processes) -> str:
    """The name of the worker process group whose pool child (or main process) is `pid`."""
    parent = int(re.search(r"PPid:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))
    return next(name for name, proc in processes.procs.items() if proc.pid in (pid, parent))


def test_fair__a_sigkilled_workers_slot_comes_back_through_the_reaper(processes, fair, backend):
    worker_env = limit(fair, 1)
    processes.start_beat(**worker_env)
    from django.core.management import call_command

    call_command("setup_periodic_tasks", verbosity=0)
    for name in ("worker-a", "worker-b"):
        processes.start_worker(name, concurrency=1, SD_API_URL=backend.url, wait=False, **worker_env)
    processes.wait_ready()
    wait_for_slots(2)
    user = make_user()
    (lost,) = create(user, 1, 3.0)
    (waiting,) = create(user, 1, 0.2)
    # The job's 3 s stage (its image), not its first one: parse ends within ~0.2 s and the image may then run
    # on the other worker, so the worker to kill is the one holding the image stage's lease.
    image = wait_until(lambda: next((lease for lease in leases.live_holders(lost.pk, 1)
                                     if lease.state == leases.RUNNING and lease.stage != "parse"), None),
                       timeout=20, interval=0.05, message="the first job's image stage running")
    processes.kill(_worker_of(image.pid, processes))  # the whole worker: nothing acknowledges or requeues it

    time.sleep(1.5)  # a free worker is there, but the lost job still holds the user's one slot
    assert fresh(waiting).status == states.QUEUED and fresh(waiting).admitted_at is None
    wait_until(lambda: fresh(waiting).status == states.COMPLETED and fresh(lost).status == states.COMPLETED,
               timeout=60, message="both jobs completed after the reaper")
    lost, waiting = fresh(lost), fresh(waiting)
    requeued = JobEvent.objects.get(job=lost, status=states.QUEUED, attempt=2)
    assert lost.attempts == 2 and lost.lost_count == 1
    assert requeued.created_at < waiting.started_at  # the slot came back through the reaper's requeue


def test_fair__deadlines_expire_a_waiting_job_and_time_out_a_running_one(processes, fair, backend):
    worker_env = limit(fair, 1)
    processes.start_beat(**worker_env)
    from django.core.management import call_command

    call_command("setup_periodic_tasks", verbosity=0)
    # Two processes: the user's limit of 1 keeps their jobs one at a time, the other runs the maintenance tasks.
    processes.start_worker(concurrency=2, SD_API_URL=backend.url, **worker_env)
    wait_for_slots(2)
    user = make_user()
    (long_one,) = create(user, 1, 30.0, max_runtime_s=2)
    (impatient,) = create(user, 1, 0.2, start_timeout_s=1)
    (after,) = create(user, 1, 0.2)

    wait_until(lambda: fresh(impatient).status == states.CANCELLED, timeout=20, message="the waiting job expired")
    impatient = fresh(impatient)
    assert impatient.error_message.startswith("expired") and impatient.admitted_at is None
    assert impatient.celery_task_id == ""  # never sent to a worker
    wait_until(lambda: fresh(long_one).status == states.FAILED, timeout=20, message="the running job timed out")
    long_one = fresh(long_one)
    assert long_one.error_message.startswith("timed out")
    assert (long_one.completed_at - long_one.started_at).total_seconds() < 2 + 4
    # The failure freed the user's one slot: the next job runs long before the 30 s the timed-out one would
    # have taken.
    wait_until(lambda: fresh(after).status == states.COMPLETED, timeout=20, message="the next job ran")
    assert fresh(after).started_at > long_one.completed_at


def test_fair__queue_position_counts_down_to_1(processes, fair, backend):
    fair.JOBS = {**fair.JOBS, "ADMISSION_HEADROOM": 0}  # one job at a time: positions move at each start
    processes.start_worker(concurrency=1, SD_API_URL=backend.url, **limit(fair, 0), JOBS_ADMISSION_HEADROOM="0")
    wait_for_slots(1)
    # Each job runs longer than a refresh may lag an admission (REFRESH_MIN_INTERVAL_S, 0.5 s), so each
    # position is in the row long enough to be seen (with 0.5 s jobs CI once saw [3, 2, None]).
    jobs = create(make_user(), 4, 1.5)
    last = jobs[-1]
    seen: list[int | None] = []

    def observe() -> bool:
        job = fresh(last)
        if not seen or seen[-1] != job.queue_position:
            seen.append(job.queue_position)
        return job.status == states.COMPLETED

    wait_until(observe, timeout=60, interval=0.02, message="the last job done")
    positions = [p for p in seen if p is not None]
    assert positions[-3:] == [3, 2, 1] and positions == sorted(positions, reverse=True), seen
    assert seen[-1] is None
