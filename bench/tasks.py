"""Bench-only Celery tasks, loaded by the bench's worker with `--include bench.tasks`.

- `noop_job_task`: a tracked no-op job. The same base task as production stages (jobs.worker.JobStageTask:
  job lookup, attempt check, Redis stage lease, `job_start`), then `job_complete` instead of the pipeline;
  its return value is stored by django-celery-results like every production stage's. What it leaves out
  of a real stage: the heartbeat thread, the output folder and the pipeline itself.
- `flood_job_task`: the same, but the "stage" reports 10,000 progress steps as fast as it can through
  JobStageContext (the production ProgressCoalescer -> job_report_progress path) before completing.
- `paced_flood_job_task`: the same with a 0.5 ms pause per step, so the flood lasts seconds.
- `raw_noop_task` / `result_noop_task`: plain Celery no-ops (no result stored / stored by
  django-celery-results), for the baselines. Every task bumps a Redis counter so the bench sees the end.
"""
from __future__ import annotations

import os
import time
from functools import lru_cache
from typing import Any

import redis
from celery import shared_task
from django.conf import settings

from jobs import services
from jobs.conf import JobSettings, job_settings
from jobs.models import GenerationJob
from jobs.worker import JobStageContext, JobStageTask

COUNTER_KEY = "bench:done"


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_APP_URL)


def count_done(name: str) -> None:
    _redis().incr(f"{settings.REDIS_KEY_PREFIX}:{COUNTER_KEY}:{name}")


class NoopJobStageTask(JobStageTask):
    """JobStageTask whose stage does nothing: the job completes right after it starts."""

    abstract = True

    def _execute(self, job: GenerationJob, attempt: int, stage: str, task_id: str, conf: JobSettings) -> dict[str, Any]:
        job_id = str(job.pk)
        self.stage_body(job_id, attempt, stage, conf)
        services.job_complete(job_id=job_id, result={"artifacts": []}, attempt=attempt)
        return {"job_id": job_id, "stage": stage, "outcome": "done"}

    def stage_body(self, job_id: str, attempt: int, stage: str, conf: JobSettings) -> None:
        pass


class FloodJobStageTask(NoopJobStageTask):
    abstract = True
    steps = 10_000
    pause_s = 0.0

    def stage_body(self, job_id: str, attempt: int, stage: str, conf: JobSettings) -> None:
        ctx = JobStageContext(job_id=job_id, attempt=attempt, stage=stage, conf=conf)
        started = time.monotonic()
        for step in range(1, self.steps + 1):
            ctx.report(100.0 * step / self.steps, f"Step {step} of {self.steps}")
            ctx.check_cancelled()  # what real stages call in their loops (also flushes a due value)
            if self.pause_s:
                time.sleep(self.pause_s)
        ctx.coalescer.flush()
        # The bench reads these back: how long the reporting took and how many reports became events.
        _redis().hset(f"{settings.REDIS_KEY_PREFIX}:bench:flood:{job_id}",
                      mapping={"seconds": time.monotonic() - started, "sent": ctx.coalescer.sent, "pid": os.getpid()})


@shared_task(bind=True, base=NoopJobStageTask, name="bench.tasks.noop_job_task")
def noop_job_task(self: NoopJobStageTask, job_id: str, attempt: int) -> dict[str, Any]:
    """First (and only) stage of a bench job: start it, complete it."""
    return self.run_stage(job_id, attempt, "parse")


@shared_task(bind=True, base=FloodJobStageTask, name="bench.tasks.flood_job_task")
def flood_job_task(self: FloodJobStageTask, job_id: str, attempt: int) -> dict[str, Any]:
    """Start the job, report 10,000 progress steps as fast as possible, complete it."""
    return self.run_stage(job_id, attempt, "parse")


class PacedFloodJobStageTask(FloodJobStageTask):
    abstract = True
    pause_s = 0.0005  # ~5 s of reporting: long enough to see the steady per-second bound


@shared_task(bind=True, base=PacedFloodJobStageTask, name="bench.tasks.paced_flood_job_task")
def paced_flood_job_task(self: PacedFloodJobStageTask, job_id: str, attempt: int) -> dict[str, Any]:
    """Like flood_job_task, with a 0.5 ms pause per step (a stage that reports ~2,000 times a second)."""
    return self.run_stage(job_id, attempt, "parse")


class SleepJobStageTask(NoopJobStageTask):
    abstract = True
    seconds = 0.5  # a short "GPU job" (real ones take seconds to minutes): admission's cost is per job

    def stage_body(self, job_id: str, attempt: int, stage: str, conf: JobSettings) -> None:
        time.sleep(self.seconds)


@shared_task(bind=True, base=SleepJobStageTask, name="bench.tasks.sleep_job_task")
def sleep_job_task(self: SleepJobStageTask, job_id: str, attempt: int) -> dict[str, Any]:
    """Start the job, sleep 0.5 s, complete it (bench/fair.py)."""
    return self.run_stage(job_id, attempt, "parse")


@shared_task(name="bench.tasks.raw_noop_task", ignore_result=True)
def raw_noop_task() -> None:
    count_done("raw")


@shared_task(name="bench.tasks.result_noop_task")
def result_noop_task() -> str:
    count_done("result")
    return "ok"


def job_signature_for(task: Any):
    """A `jobs.dispatch.job_signature` replacement sending one bench task per job (see common.dispatching)."""
    from jobs.plans import get_plan

    def job_signature(*, job_id: str, job_type: str, attempt: int):
        import uuid

        first_id = str(uuid.uuid4())
        soft, hard = job_settings().time_limits(job_type)
        queue = get_plan(job_type).first_stage.queue
        signature = task.si(job_id, attempt).set(queue=queue, soft_time_limit=soft, time_limit=hard, task_id=first_id)
        return signature, first_id

    job_signature.task_name = task.name  # what common.dispatching tells the bench's workers to send
    return job_signature


# Admission (jobs/admission.py) dispatches from the worker's processes too: a job's completion admits the
# next one there. So the bench process's swap of `job_signature` alone sent the real plan for the jobs the
# worker admitted (about half of them in bench/throughput.py). common.dispatching names the bench task in
# Redis; a worker that loaded this module sends it as well, and the real plan when none is named.
DISPATCH_KEY = "bench:dispatch-task"


def dispatch_key() -> str:
    return f"{settings.REDIS_KEY_PREFIX}:{DISPATCH_KEY}"


def _following_the_bench(original: Any):
    def job_signature(*, job_id: str, job_type: str, attempt: int):
        name = _redis().get(dispatch_key())
        if not name:
            return original(job_id=job_id, job_type=job_type, attempt=attempt)
        from celery import current_app

        return job_signature_for(current_app.tasks[name.decode()])(job_id=job_id, job_type=job_type, attempt=attempt)

    return job_signature


def _follow_the_bench() -> None:
    from jobs import dispatch

    dispatch.job_signature = _following_the_bench(dispatch.job_signature)


_follow_the_bench()


LATENCY_KEY = "bench:latency"


@shared_task(name="bench.tasks.latency_task", ignore_result=True)
def latency_task(sent_at: float) -> None:
    """The raw Celery baseline of time_to_start: seconds from publish (the sender's clock) to this task's start."""
    started = time.time()
    _redis().rpush(f"{settings.REDIS_KEY_PREFIX}:{LATENCY_KEY}", started - sent_at)
