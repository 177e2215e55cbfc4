"""Turn committed job events into Celery work: dispatch queued jobs, stop cancelled ones.

Runs from `transaction.on_commit` (via jobs.listeners), so a task never sees a job that is not in the
database yet. A broker that is down is logged and leaves the job `queued`: the reaper dispatches it later.
"""
from __future__ import annotations

import logging
import uuid

from celery import chain, chord, group, signature
from celery.canvas import Signature, _chain

from . import leases, states
from .conf import job_settings
from .listeners import CommittedEvent
from .plans import JobPlan, Stage, get_plan

logger = logging.getLogger(__name__)


def stage_signature(stage: Stage, *, job_id: str, attempt: int, limits: tuple[int, int]) -> Signature:
    """One stage's task on the stage's queue, with the job type's time limits travelling in the message."""
    soft, hard = limits
    return signature(stage.task_name, args=(job_id, attempt), immutable=True).set(
        queue=stage.queue, soft_time_limit=soft, time_limit=hard)


def plan_canvas(plan: JobPlan, *, job_id: str, attempt: int, limits: tuple[int, int]) -> Signature:
    """The plan's steps as a Celery canvas: a chain, where a parallel step becomes a chord around the rest.

    full_video: parse -> chord(images | narration, assembly); no task ever waits on another.
    """
    steps = [[stage_signature(stage, job_id=job_id, attempt=attempt, limits=limits) for stage in grp]
             for grp in plan.groups]
    canvas: Signature | None = None
    for step in reversed(steps):
        if len(step) > 1:
            canvas = chord(step, canvas) if canvas is not None else group(step)
        elif canvas is None:
            canvas = step[0]
        elif isinstance(canvas, _chain):
            canvas = chain(step[0], *canvas.tasks)
        else:
            canvas = chain(step[0], canvas)
    assert canvas is not None  # a plan has at least one step
    return canvas


def job_signature(*, job_id: str, job_type: str, attempt: int) -> tuple[Signature, str]:
    """The canvas running one attempt of a job, and the id of its first task (what `celery_task_id` holds)."""
    plan = get_plan(job_type)
    first_id = str(uuid.uuid4())
    canvas = plan_canvas(plan, job_id=job_id, attempt=attempt, limits=job_settings().time_limits(job_type))
    first = canvas.tasks[0] if isinstance(canvas, _chain) else canvas
    first.set(task_id=first_id)
    return canvas, first_id


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


def terminate_task(task_id: str) -> None:
    """Ask the worker running `task_id` to kill its pool process; the task is recorded revoked, not redelivered."""
    from celery import current_app

    current_app.control.revoke(task_id, terminate=True, signal="SIGTERM")


def terminate_stages(*, job_id: str, attempt: int) -> list[str]:
    """Terminate the stage tasks of a cancelled attempt that are still running after the grace period."""
    terminated = []
    for lease in leases.live_holders(job_id, attempt):
        if lease.state != leases.RUNNING:
            continue
        terminate_task(lease.task_id)
        terminated.append(lease.task_id)
        logger.warning("job %s: stage %s did not stop within the grace period; terminating task %s",
                       job_id, lease.stage, lease.task_id, extra={"job_id": job_id, "task_id": lease.task_id})
    return terminated


def on_event_committed(event: CommittedEvent) -> None:
    """Listener: queued (new, retried, requeued) -> dispatch, except an external job; cancelled -> revoke /
    terminate (an external job's task too: it is the job's celery_task_id and holds a BaseTask lease)."""
    if event.kind != "status":
        return
    if event.status == states.QUEUED:
        if not event.external:  # the caller's own task runs an external job (JobService.create_job)
            dispatch_job(job_id=event.job_id, job_type=event.job_type, attempt=event.attempt)
    elif event.status == states.CANCELLED:
        from .models import GenerationJob

        task_id = GenerationJob.objects.filter(pk=event.job_id).values_list("celery_task_id", flat=True).first()
        stop_job(job_id=event.job_id, attempt=event.attempt, task_id=task_id or "",
                 was_processing=event.previous_status == states.PROCESSING)
