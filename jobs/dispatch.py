"""Turn committed job events into Celery work: dispatch admitted jobs, stop cancelled ones.

When a job is sent is admission's decision (jobs/admission.py), taken on the events below; how it is sent
is `dispatch_job`'s.

Runs from `transaction.on_commit` (via jobs.listeners), so a task never sees a job that is not in the
database yet. A broker that is down is logged and leaves the job `queued`: the reaper dispatches it later.
"""
from __future__ import annotations

import logging
import uuid

from celery import chain, chord, group, signature
from celery.canvas import Signature, _chain

from jobs.broker_delay import countdown as broker_countdown

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


def scene_signature(stage: Stage, *, job_id: str, attempt: int, scene: int, limits: tuple[int, int]) -> Signature:
    """One scene's task of a per-scene stage (jobs/scenes.py sends them once the scenes are known)."""
    soft, hard = limits
    return signature(stage.task_name, args=(job_id, attempt, scene), immutable=True).set(
        queue=stage.queue, soft_time_limit=soft, time_limit=hard)


def plan_canvas(plan: JobPlan, *, job_id: str, attempt: int, limits: tuple[int, int], start: int = 0) -> Signature:
    """The plan's steps from step `start` as a Celery canvas: a chain, where a parallel step becomes a chord
    around the rest. It stops before a per-scene step: the step before it fans the scenes out, and the scene
    that finishes last sends the rest (jobs/scenes.py), since how many scenes there are is known only then.

    full_video: parse (then its scenes' image and narration tasks, then assembly); no task ever waits on another.
    """
    groups = plan.groups[start:]
    cut = next((n for n in range(len(groups)) if plan.is_scene_step(start + n)), len(groups))
    steps = [[stage_signature(stage, job_id=job_id, attempt=attempt, limits=limits) for stage in grp]
             for grp in groups[:cut]]
    if not steps:
        raise ValueError(f"{plan.job_type}: step {start} runs per scene; there is no canvas to send")
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


def send_job(*, job_id: str, job_type: str, attempt: int) -> str | None:
    """Send a queued job's work to Celery; the first task's id, or None (logged) if the broker is down.
    Not recorded: `mark_dispatched` (or `dispatch_job`, which does both) records it."""
    signature, first_id = job_signature(job_id=job_id, job_type=job_type, attempt=attempt)
    try:
        signature.apply_async(retry=False)
    except Exception as exc:  # kombu raises OperationalError, redis ConnectionError, OSError…: all mean "later"
        logger.warning("job %s: broker unreachable, left queued for the reaper (%s)", job_id, exc,
                       extra={"job_id": job_id, "attempt": attempt})
        return None
    logger.info("job %s: dispatched attempt %s as task %s", job_id, attempt, first_id,
                extra={"job_id": job_id, "attempt": attempt, "task_id": first_id})
    return first_id


def mark_dispatched(sent: dict) -> None:
    """Record the task ids of jobs just sent ({job_id: task_id}), all in one statement."""
    from . import services

    if len(sent) == 1:
        ((job_id, task_id),) = sent.items()
        if not services.job_mark_dispatched(job_id=job_id, task_id=task_id):
            logger.info("job %s: no longer queued when its dispatch was recorded", job_id, extra={"job_id": job_id})
    elif sent:
        from django.db.models import Case, Value, When
        from django.utils import timezone

        from .models import GenerationJob

        now = timezone.now()  # job_mark_dispatched's fields, for several jobs at once
        GenerationJob.objects.filter(pk__in=list(sent), status=states.QUEUED).update(
            celery_task_id=Case(*(When(pk=job_id, then=Value(task_id[:255])) for job_id, task_id in sent.items())),
            dispatched_at=now, updated_at=now)


def dispatch_job(*, job_id: str, job_type: str, attempt: int) -> str | None:
    """Send a queued job's work to Celery and remember the task id; None (logged) if the broker is down."""
    first_id = send_job(job_id=job_id, job_type=job_type, attempt=attempt)
    if first_id is not None:
        mark_dispatched({job_id: first_id})
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
            tasks.terminate_cancelled_job_task.apply_async((job_id, attempt), countdown=broker_countdown(grace),
                                                             retry=False)
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
    """Listener: queued (new, retried, requeued) -> an admission pass, which dispatches the jobs that may
    start now (jobs/admission.py; an external job is its caller's to send); cancelled -> revoke / terminate
    (an external job's task too: it is the job's celery_task_id and holds a BaseTask lease); any end frees
    a slot -> an admission pass."""
    if event.kind != "status":
        return
    from .admission import admit_safely

    if event.status == states.QUEUED:
        if not event.external:  # the caller's own task runs an external job (JobService.create_job)
            admit_safely(waiting=True)
    elif event.status == states.CANCELLED:
        from .models import GenerationJob

        task_id = GenerationJob.objects.filter(pk=event.job_id).values_list("celery_task_id", flat=True).first()
        stop_job(job_id=event.job_id, attempt=event.attempt, task_id=task_id or "",
                 was_processing=event.previous_status == states.PROCESSING)
        admit_safely()
    elif event.status in states.TERMINAL:
        admit_safely()
