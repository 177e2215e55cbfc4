"""GenerationJob (one unit of background work) and JobEvent (its numbered history).

Only jobs/services/ changes these rows; see STYLE.md's "job state machine".
"""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from . import states
from .plans import job_type_choices


def default_webhook_events() -> list[str]:
    return ["completed"]


# CONTRACT.md "priority": users may ask low or normal, staff also high (jobs/admission.py weighs them).
PRIORITY_LOW, PRIORITY_NORMAL, PRIORITY_HIGH = "low", "normal", "high"
PRIORITIES = (PRIORITY_LOW, PRIORITY_NORMAL, PRIORITY_HIGH)
PRIORITY_CHOICES = [(p, p.capitalize()) for p in PRIORITIES]


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
    # A re-run from a stage (jobs/rerun.py): the stage the current attempt starts at ("" = the plan's first)
    # and the attempt whose outputs of the earlier stages it copies. Kept across a requeue after a lost
    # worker, so that attempt starts at the same stage; a plain retry clears both.
    rerun_from = models.CharField(max_length=32, blank=True, default="")
    rerun_source = models.PositiveIntegerField(null=True, blank=True)
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
    # Fair sharing (jobs/admission.py): a job waits `queued` in the database until admission hands it to
    # Celery (admitted_at); `queue` is its plan's first queue, where it holds one worker slot until it ends.
    priority = models.CharField(max_length=8, choices=PRIORITY_CHOICES, default=PRIORITY_NORMAL)
    queue = models.CharField(max_length=64, blank=True, default="")
    admitted_at = models.DateTimeField(null=True, blank=True)
    # 1 = starts next, while queued and not yet admitted; null otherwise (jobs/queue_positions.py keeps it).
    queue_position = models.PositiveIntegerField(null=True, blank=True)
    # Deadlines (CONTRACT.md): still queued after start_timeout_s -> cancelled "expired …"; processing
    # longer than max_runtime_s (never more than JOB_TIME_LIMIT_S) -> failed "timed out …".
    start_timeout_s = models.PositiveIntegerField(null=True, blank=True)
    max_runtime_s = models.PositiveIntegerField(null=True, blank=True)
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
            models.Index(fields=["status", "admitted_at", "queue"], name="job_status_admitted_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__gte=0) & models.Q(progress__lte=100), name="job_progress_0_100"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job_type} {self.id} ({self.status})"

    @property
    def current_queue_position(self) -> int | None:
        """CONTRACT.md `queue_position`: while `queued`, 1 = starts next; null otherwise. An admitted job still
        queued is with a worker queue already: it starts next. A waiting one's place is computed off the
        request's path (jobs/queue_positions.py): null for the moment until then."""
        if self.status != states.QUEUED:
            return None
        return 1 if self.admitted_at is not None else self.queue_position

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.completed_at or self.updated_at
        return max(0.0, (end - self.started_at).total_seconds())


class JobEvent(models.Model):
    STATUS = "status"  # the job's status changed (created, started, finished, re-queued…)
    PROGRESS = "progress"  # progress or stage moved within an attempt
    ARTIFACT = "artifact"  # an artifact was stored (or reused) during an attempt: `data` holds its message
    KIND_CHOICES = [(STATUS, "Status"), (PROGRESS, "Progress"), (ARTIFACT, "Artifact")]

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=KIND_CHOICES, default=STATUS)
    status = models.CharField(max_length=16, choices=states.STATUS_CHOICES)
    progress = models.FloatField(default=0.0)
    stage = models.CharField(max_length=200, blank=True, default="")
    message = models.TextField(blank=True, default="")
    attempt = models.PositiveIntegerField(default=1)
    # For an artifact event, the artifact message's own fields ({"kind", "name", "url", "scene", "reused"}),
    # so a replay (resume, Last-Event-ID) sends the same message the live push did.
    data = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="jobevent_job_seq_unique")]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.seq} {self.status} {self.progress:.1f}"


class UserJobLimit(models.Model):
    """Staff's per-user override of JOBS_MAX_RUNNING_PER_USER (0 = no limit for this user)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True,
                                related_name="job_limit")
    max_running = models.PositiveIntegerField(help_text="How many of this user's jobs may run at once (0 = no limit).")

    class Meta:
        verbose_name = "per-user job limit"

    def __str__(self) -> str:
        return f"{self.user}: {self.max_running or 'no limit'}"


class FairShareTag(models.Model):
    """Admission's memory between passes (jobs/admission.py): each user's virtual finish tag, and the clock.

    Only the admission pass reads and writes these rows, under its lock.
    """

    key = models.CharField(max_length=64, primary_key=True)  # "user:<id>" or "clock"
    tag = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"{self.key}={self.tag:g}"
class SceneCheckpoint(models.Model):
    """One scene's artifact of one per-scene stage (an image, a narration clip): where the job's scene work stands.

    A row is the checkpoint a new attempt reads: `fingerprint` is a hash of everything the artifact was made
    from (scene text, params, backend and its version), so an attempt reuses a `done` artifact whose
    fingerprint still matches and whose file still exists, and renders only the rest (jobs/scenes.py). "All
    scenes done" before assembly is counted from these rows, never from Celery task results.
    """

    PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
    STATE_CHOICES = [(PENDING, "Pending"), (RUNNING, "Running"), (DONE, "Done"), (FAILED, "Failed")]

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="scene_checkpoints")
    scene = models.PositiveIntegerField()  # 1-based, as Scene.index
    kind = models.CharField(max_length=16)  # the stage's artifact kind: image, audio
    stage = models.CharField(max_length=32)  # the plan stage that makes it: images, audio
    fingerprint = models.CharField(max_length=64)
    attempt = models.PositiveIntegerField()  # the attempt that last rendered or reused it
    state = models.CharField(max_length=16, choices=STATE_CHOICES, default=PENDING)
    reused = models.BooleanField(default=False)  # `attempt` took it from an earlier attempt without rendering
    renders = models.PositiveIntegerField(default=0)  # times it was rendered, over all attempts
    name = models.CharField(max_length=255, blank=True, default="")  # path under the job's folder
    bytes = models.BigIntegerField(default=0)
    content_type = models.CharField(max_length=100, blank=True, default="")
    sha256 = models.CharField(max_length=64, blank=True, default="")
    meta = models.JSONField(default=dict, blank=True)
    worker = models.CharField(max_length=255, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)  # of the latest render
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["job", "scene", "kind"]
        constraints = [models.UniqueConstraint(fields=["job", "kind", "scene"], name="scenecheckpoint_unique")]

    def __str__(self) -> str:
        return f"{self.job_id} scene {self.scene} {self.kind} ({self.state}, attempt {self.attempt})"
