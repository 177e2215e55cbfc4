"""Scene checkpoints (SceneCheckpoint rows): each scene's artifact of a per-scene stage, and its events.

Every change here runs under the job's row lock, like the job service's (jobs/records.py), so the count of
finished scenes that decides "the step is done, assemble" is exact however many scene tasks finish at once,
and each stored or reused artifact is recorded as the job's next event (kind `artifact`) in the same
transaction: the event the websocket, SSE and webhooks send, and what `resume` replays.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from . import states
from .models import GenerationJob, JobEvent, SceneCheckpoint
from .records import lock_job, record_event

logger = logging.getLogger(__name__)

Url = Callable[[str], str]  # an artifact's path under the job's folder -> its download URL


@dataclass(frozen=True)
class SceneSpec:
    """One scene's work of one per-scene stage in an attempt, and the fingerprint of its inputs."""

    stage: str
    kind: str
    scene: int
    fingerprint: str


@dataclass
class Planned:
    """What an attempt has left to render of a per-scene step (`None` from plan_scenes: not this attempt's)."""

    to_render: list[SceneSpec] = field(default_factory=list)
    reused: int = 0
    done: dict[str, int] = field(default_factory=dict)  # per kind: scenes already done in this attempt

    @property
    def complete(self) -> bool:
        return not self.to_render


@dataclass(frozen=True)
class Finished:
    done: dict[str, int]  # per kind: scenes done in this attempt
    complete: bool  # every scene of every stage of the step is done: the step can be joined


def _running(job: GenerationJob, attempt: int) -> bool:
    return job.attempts == attempt and job.status == states.PROCESSING


def _record_artifact(job: GenerationJob, row: SceneCheckpoint, url: Url, message: str) -> None:
    data = {"kind": row.kind, "name": row.name.rsplit("/", 1)[-1], "url": url(row.name), "scene": row.scene,
            "reused": row.reused}
    record_event(job, kind=JobEvent.ARTIFACT, previous_status=job.status, message=message, data=data)


def _done_counts(job_id: object, attempt: int, kinds: Iterable[str]) -> dict[str, int]:
    rows = (SceneCheckpoint.objects.filter(job_id=job_id, kind__in=list(kinds), attempt=attempt,
                                           state=SceneCheckpoint.DONE)
            .values("kind").annotate(n=Count("pk")).values_list("kind", "n"))
    return dict(rows)


def plan_scenes(*, job_id: uuid.UUID | str, attempt: int, specs: list[SceneSpec], total: int,
                exists: Callable[[SceneCheckpoint], bool], url: Url) -> Planned | None:
    """Decide, for a processing attempt, which scenes to render: a scene done by an earlier attempt with the
    same fingerprint, whose file still exists, is reused (an artifact event saying `reused`); the rest are
    marked pending for this attempt. Scenes past `total` (the script lost scenes) are forgotten."""
    kinds = sorted({spec.kind for spec in specs})
    planned = Planned()
    with transaction.atomic():
        job = lock_job(job_id)
        if not _running(job, attempt):
            return None
        SceneCheckpoint.objects.filter(job=job, kind__in=kinds, scene__gt=total).delete()
        rows = {(row.kind, row.scene): row for row in SceneCheckpoint.objects.filter(job=job, kind__in=kinds)}
        for spec in specs:
            row = rows.get((spec.kind, spec.scene))
            if row is not None and row.state == SceneCheckpoint.DONE and row.attempt == attempt:
                continue  # a repeated fan-out of this attempt: done already
            if (row is not None and row.state == SceneCheckpoint.DONE and row.fingerprint == spec.fingerprint
                    and exists(row)):
                earlier = row.attempt
                row.attempt, row.reused = attempt, True
                row.save(update_fields=["attempt", "reused", "updated_at"])
                _record_artifact(job, row, url, f"Scene {spec.scene} {spec.kind} reused from attempt {earlier}")
                planned.reused += 1
                continue
            SceneCheckpoint.objects.update_or_create(
                job=job, kind=spec.kind, scene=spec.scene,
                defaults={"stage": spec.stage, "fingerprint": spec.fingerprint, "attempt": attempt,
                          "state": SceneCheckpoint.PENDING, "reused": False})
            planned.to_render.append(spec)
        planned.done = _done_counts(job.pk, attempt, kinds)
    return planned


def scene_started(*, job_id: uuid.UUID | str, attempt: int, kind: str, scene: int, worker: str) -> bool:
    """Mark a pending scene of this attempt running; False when the attempt no longer has it."""
    updated = SceneCheckpoint.objects.filter(job_id=job_id, kind=kind, scene=scene, attempt=attempt).exclude(
        state=SceneCheckpoint.DONE).update(state=SceneCheckpoint.RUNNING, started_at=timezone.now(),
                                           worker=worker[:255], updated_at=timezone.now())
    return updated == 1


def scene_failed(*, job_id: uuid.UUID | str, attempt: int, kind: str, scene: int) -> None:
    SceneCheckpoint.objects.filter(job_id=job_id, kind=kind, scene=scene, attempt=attempt).update(
        state=SceneCheckpoint.FAILED, finished_at=timezone.now(), updated_at=timezone.now())


def scene_finished(*, job_id: uuid.UUID | str, attempt: int, spec: SceneSpec, name: str, size: int,
                   content_type: str, sha256: str, meta: dict, url: Url, step_kinds: Iterable[str],
                   total: int) -> Finished | None:
    """Record a rendered scene and its artifact event; None when the attempt is over (cancelled, failed,
    superseded), so a late scene changes nothing. `complete` once every scene of the step is done."""
    kinds = list(step_kinds)
    with transaction.atomic():
        job = lock_job(job_id)
        if not _running(job, attempt):
            return None
        row = SceneCheckpoint.objects.filter(job=job, kind=spec.kind, scene=spec.scene, attempt=attempt).first()
        if row is None:
            return None
        now = timezone.now()
        row.state, row.reused, row.fingerprint = SceneCheckpoint.DONE, False, spec.fingerprint
        row.name, row.bytes, row.content_type, row.sha256 = name, size, content_type, sha256
        row.meta, row.finished_at, row.renders = meta, now, row.renders + 1
        row.save()
        _record_artifact(job, row, url, f"Scene {spec.scene} {spec.kind} rendered")
        done = _done_counts(job.pk, attempt, kinds)
    return Finished(done=done, complete=sum(done.values()) >= total * len(kinds))


def scene_rows(*, job_id: uuid.UUID | str, kind: str) -> list[SceneCheckpoint]:
    """A job's checkpoints of one kind in scene order."""
    return list(SceneCheckpoint.objects.filter(job_id=job_id, kind=kind).order_by("scene"))
