"""Job throughput vs raw Celery, on one worker with 2 pool processes (production settings otherwise).

- `celery_raw_per_s`: `bench.tasks.raw_noop_task` (ignore_result: nothing stored), sent as fast as this
  process can, timed from the first send until the last one ran (a Redis counter the tasks bump).
- `celery_dbresults_per_s`: `bench.tasks.result_noop_task`, whose results django-celery-results stores.
- `jobs_per_s`: `job_create` through the service (4 creator threads) -> the production on-commit dispatch
  (`dispatch_job`, sending `bench.tasks.noop_job_task`) -> JobStageTask's start -> `job_complete`, result
  stored; timed from the first create until every job is `completed` in the database.
One user creates every job, so its per-user running limit is lifted (JOBS_MAX_RUNNING_PER_USER=0, in this
process and the worker), and its cap on waiting jobs (JOBS_MAX_QUEUED_PER_USER=0: a full run creates more than
500 at once): admission still runs on every create and completion, but does not pace the jobs
two at a time. All three twice: with the production worker settings (CELERY_WORKER_MAX_TASKS_PER_CHILD=10, the
headline keys) and without child recycling (keys ending `_no_recycle`). Then, on the first worker, `events_per_s_under_flood` (bench/flood.py).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from jobs import queues

from . import common, flood

ALL_QUEUES = ",".join(queues.ALL)


def _wait(predicate, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not finish in time")
        time.sleep(0.02)
    return time.monotonic()


def _counter(name: str) -> int:
    from bench.tasks import COUNTER_KEY, _redis
    from django.conf import settings

    return int(_redis().get(f"{settings.REDIS_KEY_PREFIX}:{COUNTER_KEY}:{name}") or 0)


def celery_rate(task: Any, name: str, count: int) -> float:
    before = _counter(name)
    started = time.monotonic()
    for _ in range(count):
        task.apply_async(queue=queues.IMAGE)
    ended = _wait(lambda: _counter(name) >= before + count, 300)
    return count / (ended - started)


def jobs_rate(project: Any, count: int) -> float:
    from django.db import connection

    from jobs import services
    from jobs.models import GenerationJob

    def create(_: int) -> None:
        try:
            services.job_create(project=project, job_type="image_generation")
        finally:
            connection.close()

    done_before = GenerationJob.objects.filter(project=project, status="completed").count()
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(create, range(count)))
    ended = _wait(lambda: GenerationJob.objects.filter(project=project, status="completed").count()
                  >= done_before + count, 600)
    return count / (ended - started)


def measure(project: Any, counts: tuple[int, int, int], suffix: str, flood_too: bool, **worker_env: str) -> dict[str, Any]:
    """The three rates (and optionally the flood) on one fresh worker; keys end in `suffix`."""
    from bench import tasks
    from django_celery_results.models import TaskResult

    raw_n, result_n, jobs_n = counts
    group = common.process_group()
    out: dict[str, Any] = {}
    try:
        group.start_worker("bench-worker", queues=ALL_QUEUES, concurrency=2, LOG_LEVEL="INFO",
                           extra_args=["--include", "bench.tasks"], JOBS_MAX_RUNNING_PER_USER="0", **worker_env)
        celery_rate(tasks.raw_noop_task, "raw", 20)  # warm-up: pool children forked and connected
        out[f"celery_raw_per_s{suffix}"] = round(celery_rate(tasks.raw_noop_task, "raw", raw_n), 1)
        out[f"celery_dbresults_per_s{suffix}"] = round(celery_rate(tasks.result_noop_task, "result", result_n), 1)
        with common.dispatching(tasks.job_signature_for(tasks.noop_job_task)):
            jobs_rate(project, 10)  # warm-up
            before = TaskResult.objects.filter(task_name="bench.tasks.noop_job_task").count()
            out[f"jobs_per_s{suffix}"] = round(jobs_rate(project, jobs_n), 1)
            out[f"jobs_vs_raw_ratio{suffix}"] = round(out[f"jobs_per_s{suffix}"] / out[f"celery_raw_per_s{suffix}"], 3)
            out[f"jobs_results_stored{suffix}"] = TaskResult.objects.filter(
                task_name="bench.tasks.noop_job_task").count() - before
            if flood_too:
                out.update(flood.run(project))
    finally:
        group.stop_all()
    out[f"throughput_counts{suffix}"] = {"raw": raw_n, "dbresults": result_n, "jobs": jobs_n}
    return out


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    """Production worker settings (the headline figures), then the same without child recycling."""
    from django.conf import settings

    user, _ = common.make_user_with_token()
    project = common.make_project(user)
    # One user creates every job: its per-user running limit (admission, default 2) would pace the jobs and
    # the ratio would measure that, not what tracking a job costs. Admission still runs (worker slots). Its
    # cap on waiting jobs (500) refused the full run's creates past the 500th.
    jobs_before = settings.JOBS
    settings.JOBS = {**settings.JOBS, "MAX_RUNNING_PER_USER": 0, "MAX_QUEUED_PER_USER": 0}
    try:
        out = _both(project, quick)
    finally:
        settings.JOBS = jobs_before
    return out


def _both(project: Any, quick: bool) -> dict[str, Any]:
    from django.conf import settings

    out = measure(project, (120, 90, 60) if quick else (1000, 600, 500), "", True)
    out["worker_max_tasks_per_child"] = settings.CELERY_WORKER_MAX_TASKS_PER_CHILD
    # CELERY_WORKER_MAX_TASKS_PER_CHILD (default 10) forks a new pool child every 10 tasks; for no-op tasks
    # that dominates every rate above, so the same three rates without recycling show the per-task costs.
    out.update(measure(project, (300, 150, 80) if quick else (3000, 1500, 1000), "_no_recycle", False,
                       CELERY_WORKER_MAX_TASKS_PER_CHILD="1000000"))
    return out
