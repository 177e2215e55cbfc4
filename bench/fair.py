"""Fair sharing (jobs/admission.py) against plain dispatch, on one worker with 2 pool processes.

Every job is `bench.tasks.sleep_job_task` (JobStageTask's start, 0.5 s of sleep, `job_complete`), created
through `job_create`; admission is the production path (on commit, in this process and the worker).
"Plain dispatch" is the path before step 12: every job sent to Celery as it is created (`dispatch_job` in
creation order, admission listener off), so the broker's FIFO decides.

- `fair_wait_ratio`: user A floods N jobs (100; quick 20), then user B creates one. B's wait (created ->
  started) with admission over B's wait with plain dispatch (target <= 0.05).
- `fair_jain_index`: 4 users with backlogs 40/20/10/5 (quick 16/8/4/2), no per-user limit, 2 slots: the jobs
  each user got among the first 4 x 5 admissions (while all four still wait); Jain's index of those counts
  (1 = equal shares; target >= 0.95).
- `fair_throughput_ratio`: jobs/s of M jobs (100; quick 8) from 4 users (limit 2 each) with admission, over the same jobs
  with plain dispatch (target >= 0.95).
- `admission_p99_ms`: slot freed -> next job's task published, from the flood run: the k-th completion
  (completed_at) paired with the k-th dispatch after the first completion (dispatched_at, set once
  apply_async returned), p99 over the pairs (target <= 20 ms). With JOBS_ADMISSION_HEADROOM a job can be
  sent before the slot it fills frees (negative values: its process had it waiting).
"""
from __future__ import annotations

import time
from typing import Any

from jobs import queues

from . import common

ALL_QUEUES = ",".join(queues.ALL)
JOB_TYPE = "image_generation"


def _wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("jobs did not finish in time")
        time.sleep(0.02)


def _create(project: Any, n: int) -> list[Any]:
    from jobs import services

    return [services.job_create(project=project, job_type=JOB_TYPE) for _ in range(n)]


def _plain_dispatch(jobs: list[Any]) -> None:
    """The pre-admission path: every job sent at once, in creation order (each marked as holding a slot)."""
    from django.utils import timezone

    from jobs.dispatch import dispatch_job
    from jobs.models import GenerationJob

    for job in jobs:
        GenerationJob.objects.filter(pk=job.pk).update(admitted_at=timezone.now())
        dispatch_job(job_id=str(job.pk), job_type=JOB_TYPE, attempt=1)


def _done(jobs: list[Any]) -> bool:
    from jobs.models import GenerationJob

    return GenerationJob.objects.filter(pk__in=[j.pk for j in jobs], status="completed").count() == len(jobs)


def _fresh(jobs: list[Any]) -> list[Any]:
    from jobs.models import GenerationJob

    return list(GenerationJob.objects.filter(pk__in=[j.pk for j in jobs]))


def _cancel_rest(users: list[Any]) -> None:
    from jobs import services

    for user in users:
        services.jobs_cancel_queued_for_user(user_id=user.pk, reason="bench over")


def _user_project() -> tuple[Any, Any]:
    user, _ = common.make_user_with_token()
    return user, common.make_project(user)


def flood(n: int, *, fair: bool) -> dict[str, Any]:
    """A floods n jobs, B creates one after A's first ones run; B's wait, and (fair) admission latencies."""
    from contextlib import nullcontext

    a, a_project = _user_project()
    b, b_project = _user_project()
    with (nullcontext() if fair else common.dispatching(None)):
        flood_jobs = _create(a_project, n)
        if not fair:
            _plain_dispatch(flood_jobs)
        _wait(lambda: sum(j.status == "completed" for j in _fresh(flood_jobs)) >= 4, 120)
        (single,) = _create(b_project, 1)
        if not fair:
            _plain_dispatch([single])
        _wait(lambda: _done([single]), 600)
    single = _fresh([single])[0]
    out = {"wait_s": (single.started_at - single.created_at).total_seconds()}
    if fair:
        _wait(lambda: sum(j.status == "completed" for j in _fresh(flood_jobs)) >= min(n, 40), 300)
        out["latencies_ms"] = _admission_latencies(_fresh(flood_jobs + [single]))
    _cancel_rest([a, b])
    _wait(lambda: not _running(), 120)
    return out


def _running() -> bool:
    from jobs.models import GenerationJob

    return GenerationJob.objects.filter(status="processing").exists()


def _admission_latencies(jobs: list[Any]) -> list[float]:
    completions = sorted(j.completed_at for j in jobs if j.completed_at)
    dispatches = sorted(j.dispatched_at for j in jobs if j.dispatched_at)
    # Those sent before any job ended took free slots (2 processes x (1 + JOBS_ADMISSION_HEADROOM)); each
    # later one was sent because a job ended: the k-th end frees the slot of the k-th of them.
    later = [d for d in dispatches if d > completions[0]]
    return [(d - c).total_seconds() * 1000 for c, d in zip(completions, later)]


def jain(backlogs: tuple[int, ...]) -> tuple[float, list[int]]:
    from jobs.models import UserJobLimit

    from django.db import transaction

    users = [_user_project() for _ in backlogs]
    for user, _ in users:  # no per-user limit: the 2 slots alone decide (read by the worker's passes too)
        UserJobLimit.objects.create(user=user, max_running=0)
    with transaction.atomic():  # every backlog exists before the first admission pass (on commit)
        jobs = {user.pk: _create(project, n) for (user, project), n in zip(users, backlogs)}
    window = len(backlogs) * min(backlogs)
    all_jobs = [j for js in jobs.values() for j in js]
    _wait(lambda: sum(j.admitted_at is not None for j in _fresh(all_jobs)) >= window + 2, 600)
    admitted = sorted((j for j in _fresh(all_jobs) if j.admitted_at), key=lambda j: j.admitted_at)[:window]
    counts = [sum(j.project.owner_id == user.pk for j in admitted) for user, _ in users]
    _cancel_rest([user for user, _ in users])
    _wait(lambda: not _running(), 120)
    return sum(counts) ** 2 / (len(counts) * sum(c * c for c in counts)), counts


def throughput(m: int, *, fair: bool) -> float:
    from contextlib import nullcontext

    projects = [_user_project()[1] for _ in range(4)]
    with (nullcontext() if fair else common.dispatching(None)):
        started = time.monotonic()
        jobs = [job for i in range(m) for job in _create(projects[i % 4], 1)]
        if not fair:
            _plain_dispatch(jobs)
        _wait(lambda: _done(jobs), 900)
    return m / (time.monotonic() - started)


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    from django.conf import settings

    from bench import tasks

    # Every job sleeps 0.5 s on 2 slots, so N and M cost N/4 s each twice: at 200 they took ~200 s of the full
    # run's 30 minutes. 100 suffice: FIFO makes B wait ~25 s behind 100, against ~0.6 s with admission.
    n, backlogs, m = (20, (16, 8, 4, 2), 8) if quick else (100, (40, 20, 10, 5), 100)
    group = common.process_group()
    out: dict[str, Any] = {}
    base_jobs = dict(settings.JOBS)
    try:
        group.start_worker("bench-worker", queues=ALL_QUEUES, concurrency=2, LOG_LEVEL="WARNING",
                           extra_args=["--include", "bench.tasks"], CELERY_WORKER_MAX_TASKS_PER_CHILD="1000000")
        from jobs import capacity

        _wait(lambda: (capacity.slots() or {}).get(queues.IMAGE) == 2, 30)
        with common.dispatching(tasks.job_signature_for(tasks.sleep_job_task)):
            fifo = flood(n, fair=False)
            fair = flood(n, fair=True)
            out["fair_wait_s"] = round(fair["wait_s"], 3)
            out["fifo_wait_s"] = round(fifo["wait_s"], 3)
            out["fair_wait_ratio"] = round(fair["wait_s"] / fifo["wait_s"], 4)
            latencies = fair["latencies_ms"]
            out["admission_p50_ms"] = round(common.percentile(latencies, 0.5), 2)
            out["admission_p99_ms"] = round(common.percentile(latencies, 0.99), 2)
            out["admission_samples"] = len(latencies)
            index, counts = jain(backlogs)
            out["fair_jain_index"] = round(index, 4)
            out["fair_jain_counts"] = counts
            plain = throughput(m, fair=False)
            admitted = throughput(m, fair=True)
            out["fair_plain_jobs_per_s"] = round(plain, 2)
            out["fair_admitted_jobs_per_s"] = round(admitted, 2)
            out["fair_throughput_ratio"] = round(admitted / plain, 3)
    finally:
        settings.JOBS = base_jobs
        group.stop_all()
    out["fair_counts"] = {"flood": n, "backlogs": list(backlogs), "throughput_jobs": m}
    return out
