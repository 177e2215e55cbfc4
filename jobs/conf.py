"""Typed access to the job system's settings (settings.JOBS), with defaults in one place."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from django.conf import settings


@dataclass(frozen=True)
class JobSettings:
    HEARTBEAT_INTERVAL_S: float = 10.0
    STALE_AFTER_S: float = 60.0
    MAX_ATTEMPTS: int = 3
    QUEUED_REDISPATCH_AFTER_S: float = 120.0
    REAPER_INTERVAL_S: float = 30.0
    CANCEL_GRACE_S: float = 10.0
    PROGRESS_EVENTS_PER_S: float = 10.0
    RETRY_MAX: int = 3
    RETRY_BACKOFF_S: float = 2.0
    RETRY_BACKOFF_MAX_S: float = 300.0
    TIME_LIMIT_S: dict = field(default_factory=dict)  # per job type, overriding its plan's time_limit_s
    SOFT_TIME_LIMIT_MARGIN_S: int = 60
    # Wall-clock limit of a whole job attempt, all stages together, from its start (each stage's own
    # TIME_LIMIT_S still applies); the heartbeat and the reaper fail a job running past it.
    JOB_TIME_LIMIT_S: float = 3600.0
    MEDIA_SWEEP_GRACE_S: float = 900.0
    # Fair sharing (jobs/admission.py): jobs of one user running at once (0 = no limit; staff override it
    # per user), and jobs one user may have waiting before creating more is refused with 429.
    MAX_RUNNING_PER_USER: int = 2
    MAX_QUEUED_PER_USER: int = 500
    # Admitted jobs that may wait in the broker per pool process, beyond the one it runs (jobs/admission.py).
    ADMISSION_HEADROOM: int = 1
    # How often the deadlines task expires and times out jobs and runs an admission pass (a safety net).
    DEADLINES_INTERVAL_S: float = 5.0

    def time_limits(self, job_type: str) -> tuple[int, int]:
        """(soft, hard) limits in seconds of one stage of a job type, never more than the whole job's limit."""
        from .plans import get_plan

        hard = int(self.TIME_LIMIT_S.get(job_type) or get_plan(job_type).time_limit_s)
        hard = max(1, min(hard, int(self.JOB_TIME_LIMIT_S)))  # no stage may outlast the whole job
        soft = max(1, hard - int(self.SOFT_TIME_LIMIT_MARGIN_S)) if hard > self.SOFT_TIME_LIMIT_MARGIN_S else max(1, int(hard * 0.9))
        return soft, hard


def job_settings() -> JobSettings:
    """Read settings.JOBS now (tests override settings, so this is not cached)."""
    configured = getattr(settings, "JOBS", {}) or {}
    known = {f.name for f in fields(JobSettings)}
    return JobSettings(**{k: v for k, v in configured.items() if k in known})
