"""The create-time rules fair sharing relies on: who may ask which priority, valid deadlines, and the cap
on one user's waiting jobs (a backlog costs a row, not broker messages, but it is still bounded)."""
from __future__ import annotations

from typing import Any

from . import states
from .conf import job_settings
from .exceptions import InvalidJobInput, TooManyQueuedJobs
from .models import PRIORITIES, PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL, GenerationJob

MAX_QUEUED = "JOBS_MAX_QUEUED_PER_USER"


def allowed_priorities(user: Any) -> tuple[str, ...]:
    """CONTRACT.md: a user may ask low or normal, staff also high."""
    if getattr(user, "is_staff", False):
        return PRIORITIES
    return (PRIORITY_LOW, PRIORITY_NORMAL)


def check_priority(priority: Any, user: Any | None = None) -> None:
    """InvalidJobInput naming `priority` unless it is one `user` may ask (any known one without a user)."""
    allowed = PRIORITIES if user is None else allowed_priorities(user)
    if priority in allowed:
        return
    if priority == PRIORITY_HIGH:
        raise InvalidJobInput("priority", "only staff may ask for high; allowed: " + ", ".join(allowed))
    raise InvalidJobInput("priority", f"{priority!r} is not a priority; allowed: " + ", ".join(allowed))


def check_deadlines(*, start_timeout_s: Any, max_runtime_s: Any) -> None:
    """Both are null or whole seconds >= 1; max_runtime_s is never more than JOB_TIME_LIMIT_S."""
    for name, value in (("start_timeout_s", start_timeout_s), ("max_runtime_s", max_runtime_s)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**31 - 1:
            raise InvalidJobInput(name, "must be a whole number of seconds, at least 1 (or null)")
    limit = job_settings().JOB_TIME_LIMIT_S
    if max_runtime_s is not None and max_runtime_s > limit:
        raise InvalidJobInput("max_runtime_s", f"may not be more than JOB_TIME_LIMIT_S ({limit:g} s)")


def check_queued_cap(*, owner_id: Any) -> None:
    """TooManyQueuedJobs once the user has JOBS_MAX_QUEUED_PER_USER jobs waiting (0 = no cap)."""
    cap = int(job_settings().MAX_QUEUED_PER_USER)
    if not cap:
        return
    waiting = GenerationJob.objects.filter(project__owner_id=owner_id, status=states.QUEUED).count()
    if waiting >= cap:
        raise TooManyQueuedJobs(MAX_QUEUED, (
            f"you have {waiting} jobs waiting; the limit {MAX_QUEUED} is {cap} (wait for some to start, "
            "or cancel some)"))
