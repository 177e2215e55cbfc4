"""Progress flood: a task reports 10,000 progress steps as fast as it can (bench.tasks.flood_job_task).

Runs on the worker bench/throughput.py started, inside its `dispatching(...)` block, through the
production coalescer (JobStageContext -> ProgressCoalescer -> job_report_progress). The figure is the
most progress events recorded in any one-second window; the bound is JOBS_PROGRESS_EVENTS_PER_S (10).
"""
from __future__ import annotations

import time
from typing import Any


def run(project: Any) -> dict[str, Any]:
    from bench import tasks

    out = flood_once(project, tasks.flood_job_task, "")
    out.update(flood_once(project, tasks.paced_flood_job_task, "paced_"))
    return out


def flood_once(project: Any, task: Any, prefix: str) -> dict[str, Any]:
    import redis
    from django.conf import settings

    from bench import tasks
    from jobs import dispatch, services
    from jobs.models import GenerationJob, JobEvent

    original = dispatch.job_signature
    dispatch.job_signature = tasks.job_signature_for(task)
    try:
        job = services.job_create(project=project, job_type="image_generation")
    finally:
        dispatch.job_signature = original
    deadline = time.monotonic() + 300
    while GenerationJob.objects.filter(pk=job.pk, status="completed").count() == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the flood job did not complete")
        time.sleep(0.1)
    client = redis.Redis.from_url(settings.REDIS_APP_URL, decode_responses=True)
    info = client.hgetall(f"{settings.REDIS_KEY_PREFIX}:bench:flood:{job.pk}")
    seconds = float(info["seconds"])
    progress_events = JobEvent.objects.filter(job_id=job.pk, kind=JobEvent.PROGRESS).count()
    stamps = [t.timestamp() for t in JobEvent.objects.filter(job_id=job.pk, kind=JobEvent.PROGRESS)
              .order_by("seq").values_list("created_at", flat=True)]
    seqs = list(JobEvent.objects.filter(job_id=job.pk).order_by("seq").values_list("seq", flat=True))
    figures = {
        # The most progress events in any one-second window: a flood shorter than a second still shows
        # what one second of it wrote (dividing 2 events by 0.03 s would read as 60/s).
        "events_per_s_under_flood": peak_per_second(stamps),
        "flood_events_per_s_mean": round(progress_events / max(seconds, 1.0), 2),
        "flood_reports": tasks.FloodJobStageTask.steps,
        "flood_reports_per_s": round(tasks.FloodJobStageTask.steps / seconds, 1),
        "flood_progress_events": progress_events,
        "flood_seconds": round(seconds, 2),
        "flood_seq_gapless": seqs == list(range(1, len(seqs) + 1)),
    }
    if not prefix:
        return figures
    return {f"flood_{prefix}{k.removeprefix('flood_')}": v for k, v in figures.items()}


def peak_per_second(stamps: list[float]) -> int:
    """The largest number of timestamps falling in any window of one second."""
    best, start = 0, 0
    for end in range(len(stamps)):
        while stamps[end] - stamps[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best
