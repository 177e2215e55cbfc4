"""Read-only queries over jobs, always scoped to an owner where a user is given."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Min, Q, QuerySet, Subquery

from . import states
from .exceptions import JobNotFound
from .ids import parse_uuid
from .models import GenerationJob, JobEvent, SceneCheckpoint


def jobs_for_user(*, user: Any) -> QuerySet[GenerationJob]:
    """The user's jobs, newest first."""
    return GenerationJob.objects.filter(project__owner=user).select_related("project").order_by("-created_at")


def job_get_for_user(*, job_id: Any, user: Any) -> GenerationJob:
    """One of the user's jobs; JobNotFound for unknown ids and other users' jobs alike."""
    if parse_uuid(job_id) is None:
        raise JobNotFound(job_id)
    # Not jobs_for_user(): one row needs no ordering, and not the project's columns (its script can be long).
    job = GenerationJob.objects.filter(pk=job_id, project__owner=user).first()
    if job is None:
        raise JobNotFound(job_id)
    return job


def jobs_for_project(*, project_id: Any, user: Any | None = None) -> QuerySet[GenerationJob]:
    """A project's jobs, newest first (served by the (project, -created_at) index)."""
    if parse_uuid(project_id) is None:
        return GenerationJob.objects.none()
    query = GenerationJob.objects.filter(project_id=project_id)
    if user is not None:
        query = query.filter(project__owner=user)
    return query.order_by("-created_at")


def job_timeline_events(*, job_id: Any) -> QuerySet[JobEvent]:
    """A job's status events plus the first event of each (attempt, stage text), in seq order.

    What the job page's timeline and the admin's event inline are built from: a job reporting progress
    10 times a second has ~36,000 events an hour, of which only these can appear in a timeline (the first
    event of each normalised stage is also the first of its raw stage text).
    """
    firsts = (JobEvent.objects.filter(job_id=job_id, kind=JobEvent.PROGRESS).values("attempt", "stage")
              .annotate(first_seq=Min("seq")).values("first_seq"))
    return JobEvent.objects.filter(job_id=job_id).filter(
        Q(kind=JobEvent.STATUS) | Q(seq__in=Subquery(firsts))).order_by("seq")


def job_events(*, job_id: Any, after_seq: int = 0) -> QuerySet[JobEvent]:
    """A job's events after `after_seq`, in seq order."""
    return JobEvent.objects.filter(job_id=job_id, seq__gt=after_seq).order_by("seq")


def jobs_completed_of_type(*, project: Any, job_type: str) -> QuerySet[GenerationJob]:
    """A project's completed jobs of one type, the latest finished first (what a captions job starts from)."""
    return (GenerationJob.objects.filter(project=project, job_type=job_type, status=states.COMPLETED)
            .order_by("-completed_at", "-created_at"))


def job_latest_captions(*, job: GenerationJob) -> GenerationJob | None:
    """The latest completed captions job made from `job` (a full_video), if any."""
    from .plans.captions import PLAN as CAPTIONS

    return (GenerationJob.objects.filter(project_id=job.project_id, job_type=CAPTIONS.job_type, status=states.COMPLETED,
                                         params__source_job_id=str(job.pk))
            .order_by("-completed_at").first())


def job_scene_previews(*, job: GenerationJob) -> list[dict[str, Any]]:
    """The job's stored scene artifacts, one entry per scene: {"scene", "image", "audio"} (URLs or None)."""
    from .locations import key_url

    scenes: dict[int, dict[str, Any]] = {}
    rows = SceneCheckpoint.objects.filter(job=job, state=SceneCheckpoint.DONE).order_by("scene", "kind")
    for scene, kind, name in rows.values_list("scene", "kind", "name"):
        scenes.setdefault(scene, {"scene": scene, "image": None, "audio": None})[kind] = key_url(job.pk, name)
    return [scenes[number] for number in sorted(scenes)]


@dataclass(frozen=True)
class ScenesDone:
    """A job's scenes as its project page shows them: how many are done of how many, and which artifact
    kinds each scene has in the current attempt (the page's live count starts from these)."""

    done: int
    total: int
    kinds: dict[int, list[str]]


def jobs_scenes_done(*, job_ids: list[Any]) -> dict[str, ScenesDone]:
    """Per job: scenes whose every per-scene artifact of the current attempt is done, of the scenes known."""
    totals: dict[str, set[int]] = {}
    kinds: dict[str, set[str]] = {}
    stored: dict[str, dict[int, list[str]]] = {}
    rows = (SceneCheckpoint.objects.filter(job_id__in=job_ids)
            .values_list("job_id", "scene", "kind", "state", "attempt", "job__attempts"))
    for job_id, scene, kind, state, attempt, current in rows:
        key = str(job_id)
        totals.setdefault(key, set()).add(scene)
        kinds.setdefault(key, set()).add(kind)
        if state == SceneCheckpoint.DONE and attempt == current:
            stored.setdefault(key, {}).setdefault(scene, []).append(kind)
    return {key: ScenesDone(sum(len(got) == len(kinds[key]) for got in stored.get(key, {}).values()), len(scenes),
                            {scene: sorted(got) for scene, got in sorted(stored.get(key, {}).items())})
            for key, scenes in totals.items()}
