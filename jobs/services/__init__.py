"""The job service: the only code that changes a GenerationJob.

Every change runs in a transaction holding the job's row lock (SELECT … FOR UPDATE on PostgreSQL; SQLite
serialises writers with BEGIN IMMEDIATE), records a JobEvent with the next `seq`, and hands the committed
event to jobs.listeners via `transaction.on_commit` (the lock and the event: jobs/records.py; the progress
rules: jobs/progress_rules.py). Worker-side calls (start, progress, complete, fail, a lost worker, a time-out,
JobService's job_advance) treat a late or replayed update as a logged no-op; caller-side actions (cancel,
retry, a strict status update) raise InvalidTransition so the API can answer 409.

One module per kind of caller: creation.py (create, get), worker_updates.py (what a worker reports),
user_actions.py (cancel, retry, priority, delete), maintenance.py (reaper, deadlines, retention), over the
shared transition in transitions.py. Callers import from here: `from jobs import services`.
"""
from __future__ import annotations

from ..exceptions import InvalidJobInput, InvalidTransition, JobNotFound
from .creation import job_create, job_get
from .maintenance import job_expire, job_mark_expired, job_record_lost_worker, job_time_out, runtime_limit
from .user_actions import (
    EXTERNAL_RETRY_REFUSAL,
    job_cancel,
    job_delete,
    job_retry,
    job_set_priority,
    jobs_cancel_queued_for_user,
    jobs_cancel_unfinished,
)
from .worker_updates import (
    job_advance,
    job_complete,
    job_fail,
    job_heartbeat,
    job_mark_dispatched,
    job_record_reused,
    job_report_progress,
    job_start,
    job_update_status,
)

__all__ = [
    "InvalidJobInput", "InvalidTransition", "JobNotFound",  # callers catch them from here too
    "EXTERNAL_RETRY_REFUSAL", "JobService", "job_advance", "job_cancel", "job_complete", "job_create", "job_delete",
    "job_expire", "job_fail", "job_get", "job_heartbeat", "job_mark_dispatched", "job_mark_expired",
    "job_record_lost_worker", "job_record_reused", "job_report_progress", "job_retry", "job_set_priority",
    "job_start", "job_time_out", "job_update_status", "jobs_cancel_queued_for_user", "jobs_cancel_unfinished", "runtime_limit",
]

# The seed's class interface (CONTRACT.md), defined over the functions above.
from ..job_service import JobService  # noqa: E402,F401
