"""GenerationJob (one unit of background work) and JobEvent (its numbered history).

Only jobs/services.py changes these rows; see STYLE.md's "job state machine".
"""
from __future__ import annotations

import uuid

from django.db import models

from . import states
from .plans import job_type_choices


def default_webhook_events() -> list[str]:
    return ["completed"]


class GenerationJob(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="jobs")
    job_type = models.CharField(max_length=32, choices=job_type_choices)  # jobs/plans: one plan per job type
    status = models.CharField(max_length=16, choices=states.STATUS_CHOICES, default=states.QUEUED)
    progress = models.FloatField(default=0.0)
    current_stage = models.CharField(max_length=200, blank=True, default="")
    error_message = models.TextField(null=True, blank=True)
    celery_task_id = models.CharField(max_length=255, blank=True, default="")
    # The work is the caller's own task (JobService.create_job with celery_task_id), not the job type's plan:
    # nothing dispatches or re-dispatches a plan for it, and a retry is refused (docs/TASKS.md).
    external = models.BooleanField(default=False)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    # The number of the current attempt (1 for a new job); a retry or a lost worker starts the next one.
    attempts = models.PositiveIntegerField(default=1)
    # How often a worker died holding this job; the reaper fails the job after JOBS["MAX_ATTEMPTS"].
    lost_count = models.PositiveIntegerField(default=0)
    # The number of the job's latest JobEvent; the next event gets seq + 1 under the row lock.
    seq = models.PositiveIntegerField(default=0)
    # Per-stage progress (0-100 each) of the current attempt, for stages that run in parallel.
    stage_progress = models.JSONField(default=dict, blank=True)
    # Who holds the job while processing (worker hostname/pid), refreshed with heartbeat_at (the lease).
    worker = models.CharField(max_length=255, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Where the webhooks app POSTs this job's events (CONTRACT.md "Webhooks"); set at create, never changed.
    webhook_url = models.URLField(max_length=2000, null=True, blank=True)
    webhook_events_filter = models.JSONField(default=default_webhook_events, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="job_project_created_idx"),
            models.Index(fields=["status", "-created_at"], name="job_status_created_idx"),
            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__gte=0) & models.Q(progress__lte=100), name="job_progress_0_100"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job_type} {self.id} ({self.status})"

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.completed_at or self.updated_at
        return max(0.0, (end - self.started_at).total_seconds())


class JobEvent(models.Model):
    STATUS = "status"  # the job's status changed (created, started, finished, re-queued…)
    PROGRESS = "progress"  # progress or stage moved within an attempt
    KIND_CHOICES = [(STATUS, "Status"), (PROGRESS, "Progress")]

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=KIND_CHOICES, default=STATUS)
    status = models.CharField(max_length=16, choices=states.STATUS_CHOICES)
    progress = models.FloatField(default=0.0)
    stage = models.CharField(max_length=200, blank=True, default="")
    message = models.TextField(blank=True, default="")
    attempt = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="jobevent_job_seq_unique")]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.seq} {self.status} {self.progress:.1f}"
