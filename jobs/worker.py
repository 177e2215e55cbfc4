"""The base of every job stage task: claim the stage, start the job, heartbeat, report, map errors.

Tasks in jobs/tasks.py are one line each; this module holds what they share. The pipeline (jobs/pipeline)
does the work and only sees a StageContext: `report()` goes to the job service (coalesced), and
`check_cancelled()` raises JobCancelled once the job is no longer this attempt's to run.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from pathlib import Path
from typing import Any

from celery import Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from django import db
from django.db import connections

from ops import metrics

from . import leases, pipeline, plans, services, states
from .conf import JobSettings, job_settings
from .exceptions import JobNotFound
from .locations import artifact_url, job_media_dir
from .models import GenerationJob
from .progress import ProgressCoalescer

logger = logging.getLogger(__name__)

# Errors worth another try: the pipeline's transient class, the stdlib's network failures, and a database
# connection that went away (a PostgreSQL restart or failover, pg_terminate_backend): a retry reconnects.
DB_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (db.OperationalError, db.InterfaceError)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (pipeline.TransientError, ConnectionError, TimeoutError,
                                                     *DB_CONNECTION_ERRORS)
# How often check_cancelled may read the job row; stages call it in tight loops.
CANCEL_CHECK_INTERVAL_S = 0.25


def contract_result(job_id: object, job_type: str, out_dir: Path) -> dict[str, Any]:
    """The plan's result with CONTRACT.md artifacts: {"kind", "url", "bytes", "content_type", "name", "scene"?}."""
    result = plans.get_plan(job_type).build_result(out_dir)
    result["artifacts"] = [_contract_artifact(job_id, a) for a in result["artifacts"]]
    return result


def _contract_artifact(job_id: object, artifact: dict[str, Any]) -> dict[str, Any]:
    entry = {"kind": artifact["kind"], "url": artifact_url(job_id, artifact["path"]), "bytes": artifact["bytes"],
             "content_type": artifact["content_type"], "name": artifact["path"].rsplit("/", 1)[-1]}
    scene = artifact.get("meta", {}).get("scene")
    if isinstance(scene, int):  # per-scene artifacts (images, narration) say which scene, 1-based
        entry["scene"] = scene
    return entry


def drop_broken_connections() -> None:
    """Close this thread's database connections that failed, so the next query opens a fresh one.

    Django only does this between requests (and Celery between tasks); a stage or heartbeat that carries on
    after a lost connection would otherwise fail on the dead one forever.
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.in_atomic_block and not conn.is_usable():
            conn.close()


def retry_delay(retries: int, conf: JobSettings) -> float:
    """Exponential backoff with a cap and jitter (50-100 % of the step, so retries do not march in step)."""
    step = min(conf.RETRY_BACKOFF_MAX_S, conf.RETRY_BACKOFF_S * (2 ** retries))
    return round(step * random.uniform(0.5, 1.0), 3)


class JobStageContext:
    """A pipeline StageContext bound to one stage of one job attempt."""

    def __init__(self, *, job_id: str, attempt: int, stage: str, conf: JobSettings, parallel: int = 1) -> None:
        self.job_id, self.attempt, self.stage = job_id, attempt, stage
        self.coalescer = ProgressCoalescer(self._send, per_second=conf.PROGRESS_EVENTS_PER_S / max(1, parallel))
        self._checked_at = 0.0
        self.stop_reason: str | None = None  # set by the heartbeat when the job is no longer ours

    @classmethod
    def for_stage(cls, *, job_id: str, job_type: str, attempt: int, stage: str, conf: JobSettings) -> JobStageContext:
        """The context of one stage, its event rate shared with the stages its plan runs beside it."""
        parallel = plans.get_plan(job_type).running_beside(stage)
        return cls(job_id=job_id, attempt=attempt, stage=stage, conf=conf, parallel=parallel)

    def _send(self, progress: float, stage_text: str) -> None:
        services.job_report_progress(job_id=self.job_id, progress=progress, stage=stage_text, part=self.stage,
                                     attempt=self.attempt)

    def report(self, progress: float, stage: str) -> None:
        self.coalescer.report(progress, stage)

    def check_cancelled(self) -> None:
        """Raise JobCancelled once the job is cancelled, failed, finished or moved to another attempt."""
        if self.stop_reason is None:
            now = time.monotonic()
            if now - self._checked_at >= CANCEL_CHECK_INTERVAL_S:
                self._checked_at = now
                row = GenerationJob.objects.filter(pk=self.job_id).values_list("status", "attempts").first()
                if row is None:
                    self.stop_reason = "job deleted"
                elif row[1] != self.attempt:
                    self.stop_reason = f"attempt {self.attempt} superseded by {row[1]}"
                elif row[0] != states.PROCESSING:
                    self.stop_reason = f"job is {row[0]}"
        if self.stop_reason is not None:
            raise pipeline.JobCancelled(self.stop_reason)
        self.coalescer.flush_if_due()


class Heartbeat(threading.Thread):
    """Refreshes the job row's lease and the stage lease every HEARTBEAT_INTERVAL_S while a stage runs."""

    def __init__(self, ctx: JobStageContext, *, task_id: str, conf: JobSettings) -> None:
        super().__init__(name=f"heartbeat-{ctx.job_id}", daemon=True)
        self.ctx, self.task_id, self.conf = ctx, task_id, conf
        self.stopped = threading.Event()
        self.lost_at: float | None = None  # when the job stopped being this attempt's to run
        self.terminate_sent = False

    def run(self) -> None:
        try:
            while not self.stopped.wait(self._next_wait()):
                self.beat()
                self.terminate_if_overdue()
        finally:
            connections.close_all()  # this thread's own connections

    def _next_wait(self) -> float:
        if self.lost_at is None:
            return self.conf.HEARTBEAT_INTERVAL_S
        # Once the job is no longer ours, wake up exactly when the grace period ends.
        return max(0.05, min(self.conf.HEARTBEAT_INTERVAL_S, self.lost_at + self.conf.CANCEL_GRACE_S - time.monotonic()))

    def terminate_if_overdue(self) -> None:
        """A stage that has not stopped CANCEL_GRACE_S after its job was cancelled is terminated.

        Asked of the worker's main process (a revoke with terminate), which kills this pool process and
        records the task as revoked, so it is not redelivered. The cancel path also schedules the same
        terminate on the maintenance queue, for a stage whose heartbeat thread cannot run.
        """
        if self.lost_at is None or self.terminate_sent or time.monotonic() - self.lost_at < self.conf.CANCEL_GRACE_S:
            return
        from celery import current_app

        self.terminate_sent = True
        logger.warning("job %s: stage %s did not stop within %.0f s (%s); terminating task %s", self.ctx.job_id,
                       self.ctx.stage, self.conf.CANCEL_GRACE_S, self.ctx.stop_reason, self.task_id,
                       extra={"job_id": self.ctx.job_id, "task_id": self.task_id})
        current_app.control.revoke(self.task_id, terminate=True, signal="SIGTERM")

    def beat(self) -> None:
        ctx = self.ctx
        try:
            if not services.job_heartbeat(job_id=ctx.job_id, worker=leases.worker_identity(), attempt=ctx.attempt):
                ctx.stop_reason = ctx.stop_reason or "job is no longer running this attempt"
                if self.lost_at is None:
                    self.lost_at = time.monotonic()
                return
            leases.set_stage(ctx.job_id, ctx.attempt, ctx.stage, self.task_id, leases.RUNNING, self.conf.STALE_AFTER_S)
            ctx.coalescer.flush_if_due()
        except Exception:  # a missed beat is retried next interval; the stage itself carries on
            logger.exception("job %s: heartbeat failed", ctx.job_id, extra={"job_id": ctx.job_id})
            drop_broken_connections()

    def stop(self) -> None:
        self.stopped.set()
        if self.is_alive():
            self.join(timeout=5)


class JobStageTask(Task):
    """Base class of the stage tasks; subclasses (via `@shared_task(base=...)`) just name their stage."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True

    def run_stage(self, job_id: str, attempt: int, stage: str) -> dict[str, Any]:
        """Run `stage` of `attempt` of a job once, whatever copies of this message arrive."""
        conf = job_settings()
        task_id = self.request.id or ""
        try:
            job = services.job_get(job_id=job_id)
        except JobNotFound:
            logger.info("job %s: gone; nothing to do", job_id, extra={"job_id": job_id})
            raise Ignore()
        if job.attempts != attempt or job.status in states.TERMINAL:
            logger.info("job %s: is %s (attempt %s); task for attempt %s does nothing", job_id, job.status,
                        job.attempts, attempt, extra={"job_id": job_id, "attempt": attempt})
            raise Ignore()  # also stops the rest of this attempt's chain
        plan = plans.get_plan(job.job_type)
        if stage not in plan.weights:
            logger.warning("job %s: a %s job has no stage %s; task %s does nothing", job_id, job.job_type, stage,
                           task_id, extra={"job_id": job_id, "attempt": attempt})
            raise Ignore()
        first = stage == plan.first_stage.name
        if not first and job.status != states.PROCESSING:
            raise Ignore()

        outcome, holder = leases.claim_stage(job_id, attempt, stage, task_id, conf.STALE_AFTER_S)
        if (outcome == leases.LOST and first and job.status == states.QUEUED and holder is not None
                and leases.take_over_stage(job_id, attempt, stage, holder, task_id, conf.STALE_AFTER_S)):
            # The dead holder never started the job (it is still queued): no work was lost, just run it.
            logger.info("job %s: taking over stage %s from a worker that died before starting it", job_id, stage,
                        extra={"job_id": job_id, "attempt": attempt})
            outcome = leases.CLAIMED
        if outcome == leases.LOST:
            reason = f"the worker running stage {stage} was lost ({holder.pid}@{holder.host})" if holder else "worker lost"
            services.job_record_lost_worker(job_id=job_id, attempt=attempt, reason=reason)
            raise Ignore()
        if outcome != leases.CLAIMED:
            logger.info("job %s: stage %s already %s; duplicate task %s does nothing", job_id, stage, outcome,
                        task_id, extra={"job_id": job_id, "attempt": attempt})
            raise Ignore()

        if first and job.status == states.QUEUED:
            started = services.job_start(job_id=job_id, worker=leases.worker_identity(), task_id=task_id,
                                         attempt=attempt)
            if started is None:  # cancelled (or failed) between dispatch and now
                leases.set_stage(job_id, attempt, stage, task_id, leases.DONE, leases.KEY_TTL_S)
                raise Ignore()
            job = started
        return self._execute(job, attempt, stage, task_id, conf)

    def _execute(self, job: GenerationJob, attempt: int, stage: str, task_id: str, conf: JobSettings) -> dict[str, Any]:
        job_id = str(job.pk)
        ctx = JobStageContext.for_stage(job_id=job_id, job_type=job.job_type, attempt=attempt, stage=stage, conf=conf)
        heartbeat = Heartbeat(ctx, task_id=task_id, conf=conf)
        heartbeat.start()
        lease_state = leases.DONE
        try:
            out_dir = job_media_dir(job_id)
            out_dir.mkdir(parents=True, exist_ok=True)
            plan = plans.get_plan(job.job_type)
            inputs = pipeline.StageInputs(out_dir=out_dir, params=plan.clean_params(job.params),
                                          config=pipeline.PipelineConfig.from_env(), script=job.project.script,
                                          job_dir=job_media_dir)
            plan.stage(stage).run(inputs, ctx)
            ctx.coalescer.flush()
            ctx.check_cancelled()  # a cancel during the last step wins over completing
            if stage == plan.last_stage.name:
                services.job_complete(job_id=job_id, result=contract_result(job_id, job.job_type, out_dir),
                                      attempt=attempt)
            return {"job_id": job_id, "stage": stage, "outcome": "done"}
        except pipeline.JobCancelled as exc:
            logger.info("job %s: stage %s stopped: %s", job_id, stage, exc, extra={"job_id": job_id})
            return {"job_id": job_id, "stage": stage, "outcome": "stopped"}
        except SoftTimeLimitExceeded:
            # The limits travel with the message (set at dispatch), so report the one actually applied.
            _, soft = tuple(self.request.timelimit or (None, None))
            soft = soft or conf.time_limits(job.job_type)[0]
            self._fail(job_id, attempt, f"timed out after {soft:g} s", log_traceback=False)
            return {"job_id": job_id, "stage": stage, "outcome": "timed out"}
        except TRANSIENT_ERRORS as exc:
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            if isinstance(exc, DB_CONNECTION_ERRORS):
                drop_broken_connections()
                message = "the database connection was lost"  # not the driver's text, which is for the logs
            if self.request.retries < conf.RETRY_MAX:
                delay = retry_delay(self.request.retries, conf)
                # Park the stage lease for the backoff, so the reaper does not take the quiet job for lost.
                lease_state = leases.RETRYING
                leases.set_stage(job_id, attempt, stage, task_id, leases.RETRYING, delay + conf.STALE_AFTER_S)
                logger.warning("job %s: stage %s: %s; retry %s of %s in %.1f s", job_id, stage, message,
                               self.request.retries + 1, conf.RETRY_MAX, delay, extra={"job_id": job_id})
                metrics.count_retry(job.job_type)
                raise self.retry(exc=exc, countdown=delay, max_retries=conf.RETRY_MAX)
            self._fail(job_id, attempt, message, log_traceback=True)
            return {"job_id": job_id, "stage": stage, "outcome": "failed"}
        except pipeline.PipelineError as exc:
            detail = f" ({exc.detail})" if getattr(exc, "detail", "") else ""
            logger.warning("job %s: stage %s failed: %s%s", job_id, stage, exc, detail, extra={"job_id": job_id})
            self._fail(job_id, attempt, str(exc), log_traceback=False)
            return {"job_id": job_id, "stage": stage, "outcome": "failed"}
        except Exception:
            # Unexpected: the user gets a plain message; the traceback goes to the log and, re-raised,
            # to the TaskResult.
            self._fail(job_id, attempt, f"Internal error in the {stage} stage; the details are in the server logs.",
                       log_traceback=True)
            raise
        finally:
            heartbeat.stop()
            if lease_state == leases.DONE:
                try:
                    ctx.coalescer.flush()
                except Exception:  # the job may have finished meanwhile; progress is best effort
                    logger.debug("final progress flush failed", exc_info=True)
                leases.set_stage(job_id, attempt, stage, task_id, leases.DONE, leases.KEY_TTL_S)

    def _fail(self, job_id: str, attempt: int, message: str, *, log_traceback: bool) -> None:
        if log_traceback:
            logger.exception("job %s: failing: %s", job_id, message, extra={"job_id": job_id})
        services.job_fail(job_id=job_id, error_message=message, attempt=attempt)
