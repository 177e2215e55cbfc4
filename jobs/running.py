"""A job attempt while a task runs it: the StageContext the work reports to, and the heartbeat thread.

`JobStageContext.report()` goes to the job service (coalesced), and `check_cancelled()` raises
JobCancelled once the job is no longer this attempt's to run. The `Heartbeat` keeps the job row's and the
stage's leases fresh, fails the job once it has run past JOB_TIME_LIMIT_S, and terminates a task that does
not stop within CANCEL_GRACE_S after its job was cancelled, failed or taken from it.
"""
from __future__ import annotations

import logging
import threading
import time

from django.db import connections

from . import leases, services, states
from .conf import JobSettings
from .models import GenerationJob
from .pipeline.errors import JobCancelled
from .progress import ProgressCoalescer

logger = logging.getLogger(__name__)

# How often check_cancelled may read the job row; stages call it in tight loops.
CANCEL_CHECK_INTERVAL_S = 0.25


def drop_broken_connections() -> None:
    """Close this thread's database connections that failed, so the next query opens a fresh one.

    Django only does this between requests (and Celery between tasks); a stage or heartbeat that carries on
    after a lost connection would otherwise fail on the dead one forever.
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.in_atomic_block and not conn.is_usable():
            conn.close()


class JobStageContext:
    """A pipeline StageContext bound to one stage (`part`) of one job attempt.

    With `part`, reports are that stage's own 0-100, combined into the job's progress by stage weight;
    without, they are the job's progress itself (a task that is the whole job). `parallel` stages share
    the job's event rate.
    """

    def __init__(self, *, job_id: str, attempt: int, stage: str, conf: JobSettings, parallel: int = 1,
                 part: str | None = "", deadline: float | None = None) -> None:
        self.job_id, self.attempt, self.stage = job_id, attempt, stage
        self.deadline = deadline  # epoch seconds when the attempt runs out of JOB_TIME_LIMIT_S
        self.part = stage if part == "" else part
        self.coalescer = ProgressCoalescer(self._send, per_second=conf.PROGRESS_EVENTS_PER_S / max(1, parallel))
        self._checked_at = 0.0
        self.stop_reason: str | None = None  # set by the heartbeat when the job is no longer ours

    @classmethod
    def for_stage(cls, *, job_id: str, job_type: str, attempt: int, stage: str, conf: JobSettings,
                  deadline: float | None = None) -> JobStageContext:
        """The context of one stage, its event rate shared with the stages its plan runs beside it."""
        from .plans import get_plan

        return cls(job_id=job_id, attempt=attempt, stage=stage, conf=conf,
                   parallel=get_plan(job_type).running_beside(stage), deadline=deadline)

    def _send(self, progress: float, stage_text: str) -> None:
        services.job_report_progress(job_id=self.job_id, progress=progress, stage=stage_text, part=self.part,
                                     attempt=self.attempt)

    def report(self, progress: float, stage: str) -> None:
        self.coalescer.report(progress, stage)

    def check_cancelled(self) -> None:
        """Raise JobCancelled once the job is cancelled, failed, finished or moved to another attempt."""
        if self.stop_reason is None:
            now = time.monotonic()
            if now - self._checked_at >= CANCEL_CHECK_INTERVAL_S:
                self._checked_at = now
                self.stop_reason = self._reason_to_stop()
        if self.stop_reason is not None:
            raise JobCancelled(self.stop_reason)
        self.coalescer.flush_if_due()

    def _reason_to_stop(self) -> str | None:
        row = GenerationJob.objects.filter(pk=self.job_id).values_list("status", "attempts").first()
        if row is None:
            return "job deleted"
        if row[1] != self.attempt:
            return f"attempt {self.attempt} superseded by {row[1]}"
        if row[0] != states.PROCESSING:
            return f"job is {row[0]}"
        return None


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
        from .dispatch import terminate_task

        self.terminate_sent = True
        logger.warning("job %s: stage %s did not stop within %.0f s (%s); terminating task %s", self.ctx.job_id,
                       self.ctx.stage, self.conf.CANCEL_GRACE_S, self.ctx.stop_reason, self.task_id,
                       extra={"job_id": self.ctx.job_id, "task_id": self.task_id})
        terminate_task(self.task_id)

    def beat(self) -> None:
        ctx = self.ctx
        try:
            # Past the whole job's limit the job fails here; the refused heartbeat below then stops the stage.
            if ctx.deadline is not None and time.time() >= ctx.deadline:
                services.job_time_out(job_id=ctx.job_id, attempt=ctx.attempt)
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
