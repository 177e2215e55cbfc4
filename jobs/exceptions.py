"""Domain exceptions of the job system; the API, consumers and admin map them to clear answers."""
from __future__ import annotations


class JobError(Exception):
    """Base class of the job system's domain errors."""


class JobNotFound(JobError):
    def __init__(self, job_id: object) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class ProjectNotFound(JobError):
    def __init__(self, project_id: object) -> None:
        super().__init__(f"project {project_id} not found")
        self.project_id = project_id


class InvalidTransition(JobError):
    def __init__(self, job_id: object, current: str, target: str, reason: str | None = None) -> None:
        self.job_id, self.current, self.target = job_id, current, target
        self.reason = reason or f"job is {current}; it cannot become {target}"
        super().__init__(self.reason)


class InvalidJobInput(JobError):
    """Bad job type, params or script; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class TooManyQueuedJobs(InvalidJobInput):
    """The user already has JOBS_MAX_QUEUED_PER_USER jobs waiting (the API answers 429)."""
