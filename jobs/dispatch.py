"""Turn committed job events into Celery work: dispatch queued jobs, stop cancelled ones.

Runs from `transaction.on_commit` (via jobs.listeners), so a task never sees a job that is not in the
database yet. A broker that is down is logged and leaves the job `queued`: the reaper dispatches it later.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import chain, chord
from celery.canvas import Signature

from . import leases, states
from .conf import job_settings
from .listeners import CommittedEvent

logger = logging.getLogger(__name__)

# The queue each job type's own stages run on (full_video's parallel stages go to their own queues).
JOB_QUEUE = {
    states.FULL_VIDEO: "video_generation",
    states.IMAGE_GENERATION: "image_generation",
    states.AUDIO_GENERATION: "audio_generation",
}


def _stage(task: Any, job_id: str, attempt: int, queue: str, limits: tuple[int, int]) -> Signature:
    soft, hard = limits
    return task.si(job_id, attempt).set(queue=queue, soft_time_limit=soft, time_limit=hard)


def job_signature(*, job_id: str, job_type: str, attempt: int) -> tuple[Signature, str]:
    """The canvas running one attempt of a job, and the id of its first task (what `celery_task_id` holds).

    full_video: parse -> chord(images | narration in parallel) -> assembly; no task ever waits on another.
    """
    from . import tasks

    limits = job_settings().time_limits(job_type)
    queue = JOB_QUEUE[job_type]
    first_id = str(uuid.uuid4())
    parse = _stage(tasks.parse_script_task, job_id, attempt, queue, limits).set(task_id=first_id)
    if job_type == states.FULL_VIDEO:
        parallel = [
            _stage(tasks.generate_images_task, job_id, attempt, "image_generation", limits),
            _stage(tasks.generate_narration_task, job_id, attempt, "audio_generation", limits),
        ]
        assemble = _stage(tasks.assemble_video_task, job_id, attempt, "video_generation", limits)
        return chain(parse, chord(parallel, assemble)), first_id
    stage_task = tasks.generate_images_task if job_type == states.IMAGE_GENERATION else tasks.generate_narration_task
    return chain(parse, _stage(stage_task, job_id, attempt, queue, limits)), first_id


def dispatch_job(*, job_id: str, job_type: str, attempt: int) -> str | None:
    """Send a queued job's work to Celery and remember the task id; None (logged) if the broker is down."""
    from . import services

    signature, first_id = job_signature(job_id=job_id, job_type=job_type, attempt=attempt)
    try:
        signature.apply_async(retry=False)
    except Exception as exc:  # kombu raises OperationalError, redis ConnectionError, OSError…: all mean "later"
        logger.warning("job %s: broker unreachable, left queued for the reaper (%s)", job_id, exc,
                       extra={"job_id": job_id, "attempt": attempt})
        return None
    if not services.job_mark_dispatched(job_id=job_id, task_id=first_id):
        logger.info("job %s: no longer queued when its dispatch was recorded", job_id, extra={"job_id": job_id})
    logger.info("job %s: dispatched attempt %s as task %s", job_id, attempt, first_id,
                extra={"job_id": job_id, "attempt": attempt, "task_id": first_id})
    return first_id


def stop_job(*, job_id: str, attempt: int, task_id: str, was_processing: bool) -> None:
    """Revoke a cancelled job's queued task; for a running one schedule a terminate after the grace period."""
    from celery import current_app

    from . import tasks

    try:
        if task_id:
            current_app.control.revoke(task_id)
        if was_processing:
            grace = job_settings().CANCEL_GRACE_S
            tasks.terminate_cancelled_job_task.apply_async((job_id, attempt), countdown=grace, retry=False)
    except Exception as exc:  # the stage still sees the cancel at its next check; nothing is lost
        logger.warning("job %s: could not revoke or schedule the terminate (%s)", job_id, exc,
                       extra={"job_id": job_id})


def terminate_stages(*, job_id: str, attempt: int) -> list[str]:
    """Terminate the stage tasks of a cancelled attempt that are still running after the grace period."""
    from celery import current_app

    terminated = []
    for lease in leases.live_holders(job_id, attempt):
        if lease.state != leases.RUNNING:
            continue
        current_app.control.revoke(lease.task_id, terminate=True, signal="SIGTERM")
        terminated.append(lease.task_id)
        logger.warning("job %s: stage %s did not stop within the grace period; terminating task %s",
                       job_id, lease.stage, lease.task_id, extra={"job_id": job_id, "task_id": lease.task_id})
    return terminated


def on_event_committed(event: CommittedEvent) -> None:
    """Listener: queued (new, retried, requeued) -> dispatch; cancelled -> revoke / terminate."""
    if event.kind != "status":
        return
    if event.status == states.QUEUED:
        dispatch_job(job_id=event.job_id, job_type=event.job_type, attempt=event.attempt)
    elif event.status == states.CANCELLED:
        from .models import GenerationJob

        task_id = GenerationJob.objects.filter(pk=event.job_id).values_list("celery_task_id", flat=True).first()
        stop_job(job_id=event.job_id, attempt=event.attempt, task_id=task_id or "",
                 was_processing=event.previous_status == states.PROCESSING)
