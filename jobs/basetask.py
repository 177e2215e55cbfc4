"""BaseTask: the base of every Celery task that works on a job (`@app.task(base=BaseTask, bind=True)`).

A task whose arguments name a `job_id` (and optionally an `attempt`) runs as that job's worker:

- it claims the job: a redelivered copy of a running or finished task does nothing, a copy held by a dead
  worker counts a lost worker, and a job still queued is started (queued -> processing) for this worker;
- a heartbeat thread keeps the job's leases fresh while it runs, fails the job once it has run past
  JOB_TIME_LIMIT_S, and terminates the task if it does not stop within CANCEL_GRACE_S of a cancel;
- `self.report_progress(progress, stage)` reports (coalesced to JOBS["PROGRESS_EVENTS_PER_S"]) and
  `self.check_cancelled()` raises JobCancelled once the job is no longer this run's; after a cancel the
  task just stops;
- transient errors (TRANSIENT_ERRORS) are retried with exponential backoff and jitter, up to
  JOBS["RETRY_MAX"] times; the soft time limit fails the job "timed out"; any other error fails it with a
  plain message (the traceback goes to the log);
- when the task returns and the job is still running, the job is completed with the returned dict as its
  result (`complete_on_return`).

Log lines carry `job_id` and `task_id` through the task signals (ops/celery_signals.py, ops/logging.py).
The pipeline's stage task (jobs/worker.py JobStageTask) specialises this class.
"""
from __future__ import annotations

import inspect
import logging
import random
import time
from typing import Any, Callable

import kombu.exceptions
from celery import Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from django import db

from jobs.broker_delay import countdown as broker_countdown
from ops import metrics

from . import leases, services, states
from .conf import JobSettings, job_settings
from .exceptions import JobNotFound
from .models import GenerationJob
from .pipeline.errors import JobCancelled, PipelineError, TransientError
from .running import Heartbeat, JobStageContext, drop_broken_connections

logger = logging.getLogger(__name__)

# Errors worth another try: the pipeline's transient class, the stdlib's network failures, a database
# connection that went away (a PostgreSQL restart or failover, pg_terminate_backend), and Redis away for a
# moment (a restart or a Sentinel failover): the lease store's errors, and kombu's OperationalError, which a
# publish from a stage (the per-scene fan-out) raises once its own retries are spent. A retry reconnects.
DB_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (db.OperationalError, db.InterfaceError)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TransientError, ConnectionError, TimeoutError,
                                                     *DB_CONNECTION_ERRORS, *leases.UNAVAILABLE,
                                                     kombu.exceptions.OperationalError)

Body = Callable[[JobStageContext], Any]
# How long a stage keeps trying to claim its lease while the locks' Redis is away, and the pause between tries.
CLAIM_PATIENCE_S = 15.0
CLAIM_PAUSE_S = 0.5


def retry_delay(retries: int, conf: JobSettings) -> float:
    """Exponential backoff with a cap and jitter (50-100 % of the step, so retries do not march in step)."""
    step = min(conf.RETRY_BACKOFF_MAX_S, conf.RETRY_BACKOFF_S * (2 ** retries))
    return round(step * random.uniform(0.5, 1.0), 3)


def _outcome(job_id: str, stage: str, outcome: str) -> dict[str, str]:
    """What a run that did not finish its work returns (stopped, timed out, failed)."""
    return {"job_id": job_id, "stage": stage, "outcome": outcome}


def _job_arguments(task: Task, args: tuple, kwargs: dict) -> tuple[Any, Any]:
    """The `job_id` and `attempt` arguments of a task call, by parameter name (None when absent)."""
    try:
        bound = inspect.signature(task.run).bind_partial(*args, **kwargs).arguments
    except (TypeError, ValueError):
        bound = kwargs
    return bound.get("job_id"), bound.get("attempt")


class BaseTask(Task):
    """See the module docstring; a subclass may set `job_stage` (the lease name, default the task name)."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    complete_on_return = True
    job_stage: str | None = None
    # Whether __call__ runs the whole call as the job's worker; JobStageTask runs its stages itself.
    job_per_call = True

    # --- for task bodies ------------------------------------------------------------------------------

    def report_progress(self, progress: float, stage: str = "") -> None:
        """Report the job's progress (0-100, coalesced); a no-op outside a job run."""
        ctx = self._context()
        if ctx is not None:
            ctx.report(progress, stage)

    def check_cancelled(self) -> None:
        """Raise JobCancelled once the job was cancelled, failed, finished or moved to another attempt."""
        ctx = self._context()
        if ctx is not None:
            ctx.check_cancelled()

    def _context(self) -> JobStageContext | None:
        return getattr(self.request, "job_context", None)

    # --- the run --------------------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        job_id, attempt = _job_arguments(self, args, kwargs) if self.job_per_call else (None, None)
        if job_id is None:
            return super().__call__(*args, **kwargs)
        stage = self.job_stage or self.name
        job = self.claim_job(str(job_id), attempt, stage)

        def body(ctx: JobStageContext) -> Any:
            returned = super(BaseTask, self).__call__(*args, **kwargs)
            if self.complete_on_return:
                self._complete_if_running(str(job.pk), job.attempts, returned)
            return returned

        return self.run_guarded(job, job.attempts, stage, body, part=None)

    def accepts_stage(self, job: GenerationJob, stage: str) -> bool:
        """Whether this task has `stage` to run for the job (JobStageTask: a stage of the job's plan)."""
        return True

    def starts_job(self, job: GenerationJob, stage: str) -> bool:
        """Whether this task may start a queued job (JobStageTask: only the plan's first stage)."""
        return True

    def claim_job(self, job_id: str, attempt: int | None, stage: str) -> GenerationJob:
        """The job, claimed for this run of `stage` (see the module docstring); Ignore when there is nothing to do."""
        conf = job_settings()
        task_id = self.request.id or ""
        try:
            job = services.job_get(job_id=job_id)
        except JobNotFound:
            logger.info("job %s: gone; nothing to do", job_id, extra={"job_id": job_id})
            raise Ignore() from None
        attempt = job.attempts if attempt is None else attempt
        if job.attempts != attempt or job.status in states.TERMINAL:
            logger.info("job %s: is %s (attempt %s); task for attempt %s does nothing", job_id, job.status,
                        job.attempts, attempt, extra={"job_id": job_id, "attempt": attempt})
            raise Ignore()  # also stops the rest of this attempt's chain
        start = self.starts_job(job, stage)
        if not self.accepts_stage(job, stage) or (not start and job.status != states.PROCESSING):
            raise Ignore()
        self._claim_lease(job, attempt, stage, task_id, conf, start=start)
        if start and job.status == states.QUEUED:
            started = services.job_start(job_id=job_id, worker=leases.worker_identity(), task_id=task_id,
                                         attempt=attempt)
            if started is None:  # cancelled (or failed) between dispatch and now
                leases.set_stage(job_id, attempt, stage, task_id, leases.DONE, leases.KEY_TTL_S)
                raise Ignore()
            job = started
        return job

    def _claim_lease(self, job: GenerationJob, attempt: int, stage: str, task_id: str, conf: JobSettings, *,
                     start: bool) -> None:
        job_id = str(job.pk)
        outcome, holder = self._claim_patiently(job_id, attempt, stage, task_id, conf)
        if (outcome == leases.LOST and start and job.status == states.QUEUED and holder is not None
                and leases.take_over_stage(job_id, attempt, stage, holder, task_id, conf.STALE_AFTER_S)):
            # The dead holder never started the job (it is still queued): no work was lost, just run it.
            logger.info("job %s: taking over stage %s from a worker that died before starting it", job_id, stage,
                        extra={"job_id": job_id, "attempt": attempt})
            return
        if outcome == leases.LOST:
            reason = f"the worker running stage {stage} was lost ({holder.pid}@{holder.host})" if holder else "worker lost"
            services.job_record_lost_worker(job_id=job_id, attempt=attempt, reason=reason)
            raise Ignore()
        if outcome != leases.CLAIMED:
            logger.info("job %s: stage %s already %s; duplicate task %s does nothing", job_id, stage, outcome,
                        task_id, extra={"job_id": job_id, "attempt": attempt})
            raise Ignore()

    def _claim_patiently(self, job_id: str, attempt: int, stage: str, task_id: str,
                         conf: JobSettings) -> tuple[str, leases.Lease | None]:
        """leases.claim_stage, waiting out a short outage of the locks' Redis (a restart, a Sentinel failover).

        Failing here would ack the message of a stage that never ran and leave the job to the reaper (a second
        attempt). The claim is tried again in this process for CLAIM_PATIENCE_S first: with Sentinel the broker
        shares the failed master, so a Celery retry could not even be published yet. Past that, a retry.
        """
        started, logged = time.monotonic(), False
        while True:
            try:
                # A redelivered message waits up to two heartbeats for a sign of life from a holder on another host.
                return leases.claim_stage(job_id, attempt, stage, task_id, conf.STALE_AFTER_S,
                                          refresh_wait_s=2 * conf.HEARTBEAT_INTERVAL_S + 1)
            except leases.UNAVAILABLE as exc:
                if not logged:
                    logger.warning("job %s: stage %s: lease store unavailable (%s); claiming again", job_id, stage,
                                   exc, extra={"job_id": job_id, "attempt": attempt})
                    logged = True
                if time.monotonic() - started < CLAIM_PATIENCE_S:
                    time.sleep(CLAIM_PAUSE_S)
                    continue
                raise self.retry(exc=exc, countdown=broker_countdown(retry_delay(self.request.retries, conf)),
                                 max_retries=conf.RETRY_MAX, queue=self._delivered_queue()) from None

    def job_context(self, job: GenerationJob, attempt: int, stage: str, conf: JobSettings, *,
                    part: str | None) -> JobStageContext:
        """The StageContext of this run (JobStageTask shares the event rate between parallel stages)."""
        return JobStageContext(job_id=str(job.pk), attempt=attempt, stage=stage, conf=conf, part=part,
                               deadline=self._deadline(job, conf))

    @staticmethod
    def _deadline(job: GenerationJob, conf: JobSettings) -> float | None:
        from .services import runtime_limit

        # max_runtime_s of the job when it is the smaller (CONTRACT.md), else JOB_TIME_LIMIT_S.
        return job.started_at.timestamp() + runtime_limit(job)[0] if job.started_at else None

    def run_guarded(self, job: GenerationJob, attempt: int, stage: str, body: Body, *,
                    part: str | None = "") -> Any:
        """Run `body` with the heartbeat and the error policy of the module docstring."""
        conf = job_settings()
        job_id, task_id = str(job.pk), self.request.id or ""
        ctx = self.job_context(job, attempt, stage, conf, part=part)
        self.request.job_context = ctx
        if ctx.deadline is not None and time.time() >= ctx.deadline:
            services.job_time_out(job_id=job_id, attempt=attempt)
        heartbeat = Heartbeat(ctx, task_id=task_id, conf=conf)
        heartbeat.start()
        lease_state = leases.DONE
        try:
            ctx.check_cancelled()  # a job timed out above, or cancelled since it was claimed, runs nothing
            returned = body(ctx)
            ctx.coalescer.flush()
            return returned
        except TRANSIENT_ERRORS as exc:
            lease_state = leases.RETRYING  # parked for the backoff, unless out of retries (then done)
            lease_state = self._retry_or_fail(exc, job, attempt, stage, task_id, conf)
            return _outcome(job_id, stage, "failed")
        except Exception as exc:
            return self._settle(exc, job, attempt, stage, conf)
        finally:
            heartbeat.stop()
            self.request.job_context = None
            if lease_state == leases.DONE:
                self._release(ctx, job_id, attempt, stage, task_id)

    def _settle(self, exc: Exception, job: GenerationJob, attempt: int, stage: str, conf: JobSettings) -> dict:
        """The job's fate after an error that is not retried: stopped, timed out, failed (or re-raised)."""
        job_id = str(job.pk)
        if isinstance(exc, JobCancelled):
            logger.info("job %s: stage %s stopped: %s", job_id, stage, exc, extra={"job_id": job_id})
            return _outcome(job_id, stage, "stopped")
        if isinstance(exc, SoftTimeLimitExceeded):
            self._fail(job_id, attempt, f"timed out after {self._soft_limit(job, conf):g} s", log_traceback=False)
            return _outcome(job_id, stage, "timed out")
        if isinstance(exc, PipelineError):
            detail = f" ({exc.detail})" if getattr(exc, "detail", "") else ""
            logger.warning("job %s: stage %s failed: %s%s", job_id, stage, exc, detail, extra={"job_id": job_id})
            self._fail(job_id, attempt, str(exc), log_traceback=False)
            return _outcome(job_id, stage, "failed")
        # Unexpected: the user gets a plain message; the traceback goes to the log and, re-raised, to the
        # TaskResult.
        self._fail(job_id, attempt, f"Internal error in the {self._stage_label(stage)} stage; the details are in "
                   "the server logs.", log_traceback=True)
        raise exc

    def _soft_limit(self, job: GenerationJob, conf: JobSettings) -> float:
        # The limits travel with the message (set at dispatch), so report the one actually applied.
        _, soft = tuple(self.request.timelimit or (None, None))
        return soft or conf.time_limits(job.job_type)[0]

    def _retry_or_fail(self, exc: BaseException, job: GenerationJob, attempt: int, stage: str, task_id: str,
                       conf: JobSettings) -> str:
        """Retry a transient error after a backoff (raises Retry) or, out of retries, fail the job; the lease state."""
        job_id = str(job.pk)
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if isinstance(exc, DB_CONNECTION_ERRORS):
            drop_broken_connections()
            message = "the database connection was lost"  # not the driver's text, which is for the logs
        if self.request.retries >= conf.RETRY_MAX:
            self._fail(job_id, attempt, message, log_traceback=True)
            return leases.DONE
        # Whole seconds on RabbitMQ (native delayed delivery); the lease is parked for what is published.
        delay = broker_countdown(retry_delay(self.request.retries, conf))
        # Park the stage lease for the backoff, so the reaper does not take the quiet job for lost.
        leases.set_stage(job_id, attempt, stage, task_id, leases.RETRYING, delay + conf.STALE_AFTER_S)
        logger.warning("job %s: stage %s: %s; retry %s of %s in %.1f s", job_id, stage, message,
                       self.request.retries + 1, conf.RETRY_MAX, delay, extra={"job_id": job_id})
        metrics.count_retry(job.job_type)
        raise self.retry(exc=exc, countdown=delay, max_retries=conf.RETRY_MAX, queue=self._delivered_queue())

    def _delivered_queue(self) -> str | None:
        """The queue this message came from, so its retry goes back there: parse runs on each job type's own
        queue, and through RabbitMQ's delay exchanges a retry would otherwise follow the task's default route.
        The routing key is the queue's name, after the delay bits (`0.1.…`) of an earlier delayed retry."""
        routing_key = str((self.request.delivery_info or {}).get("routing_key") or "")
        queue = routing_key.rsplit(".", 1)[-1]
        return queue if queue in self.app.amqp.queues else None

    @staticmethod
    def _release(ctx: JobStageContext, job_id: str, attempt: int, stage: str, task_id: str) -> None:
        try:
            ctx.coalescer.flush()
        except Exception:  # the job may have finished meanwhile; progress is best effort
            logger.debug("final progress flush failed", exc_info=True)
        try:
            leases.set_stage(job_id, attempt, stage, task_id, leases.DONE, leases.KEY_TTL_S)
        except leases.UNAVAILABLE:
            # The work is done and recorded in the database; the running lease just expires (STALE_AFTER_S).
            logger.warning("job %s: stage %s done but its lease could not be marked done (lease store "
                           "unavailable)", job_id, stage, extra={"job_id": job_id})

    def _stage_label(self, stage: str) -> str:
        return stage.rsplit(".", 1)[-1]

    @staticmethod
    def _complete_if_running(job_id: str, attempt: int, returned: Any) -> None:
        if GenerationJob.objects.filter(pk=job_id, attempts=attempt, status=states.PROCESSING).exists():
            services.job_complete(job_id=job_id, result=returned if isinstance(returned, dict) else {},
                                  attempt=attempt)

    @staticmethod
    def _fail(job_id: str, attempt: int, message: str, *, log_traceback: bool) -> None:
        if log_traceback:
            logger.exception("job %s: failing: %s", job_id, message, extra={"job_id": job_id})
        services.job_fail(job_id=job_id, error_message=message, attempt=attempt)
