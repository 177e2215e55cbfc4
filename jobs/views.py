"""The job page: live progress, timeline, result media; Cancel/Retry/Re-run from a stage as plain form posts."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from api.throttling import THROTTLED_TEXT, job_create_allowed

from . import plans, selectors, services, states
from .display import format_duration, queue_line
from .exceptions import InvalidJobInput, InvalidTransition, JobNotFound
from .locations import artifact_url
from .models import GenerationJob, JobEvent
from .pipeline.store import StoreRefused, StoreUnavailable

logger = logging.getLogger(__name__)

# How often the page reloads itself while the job runs and JavaScript is off.
NOSCRIPT_REFRESH_S = 3


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    status: str
    stage: str
    progress: float
    message: str
    attempt: int


# "Generating images (3/40)": the counter moves within one stage and is not a stage change.
_STAGE_COUNTER = re.compile(r"\s*\(\d+\s*/\s*\d+\)\s*$")


def stage_name(stage: str) -> str:
    return _STAGE_COUNTER.sub("", stage or "")


def job_timeline(events: list[JobEvent]) -> list[TimelineEntry]:
    """Status changes and the first appearance of each stage per attempt.

    Stages running in parallel alternate in `current_stage`, and progress ticks within a stage would
    drown the story, so a stage is listed once, when it starts.
    """
    entries: list[TimelineEntry] = []
    seen: set[tuple[int, str]] = set()
    for event in events:
        stage = stage_name(event.stage)
        key = (event.attempt, stage)
        if event.kind == JobEvent.STATUS or (stage and key not in seen):
            entries.append(TimelineEntry(event.created_at, event.status, stage, event.progress, event.message,
                                         event.attempt))
        seen.add(key)
    return entries


def artifact_links(job: GenerationJob) -> dict[str, list[dict[str, Any]]]:
    """The result's artifacts grouped by kind, each with a URL under the job's (auth-checked) API path."""
    grouped: dict[str, list[dict[str, Any]]] = {"video": [], "image": [], "audio": [], "scenes": []}
    result = job.result if isinstance(job.result, dict) else {}
    for item in result.get("artifacts") or []:
        if not isinstance(item, dict):
            continue
        url = item.get("url") or (artifact_url(job.pk, item["path"]) if item.get("path") else None)
        if url:
            name = str(item.get("path") or url).rsplit("/", 1)[-1]
            grouped.setdefault(str(item.get("kind")), []).append({**item, "url": url, "name": name})
    return grouped


def retention_state(job: GenerationJob) -> dict[str, Any]:
    """Whether retention deleted the job's files (jobs/retention.py), when, and when it will."""
    from django.conf import settings
    from django.utils.dateparse import parse_datetime

    result = job.result if isinstance(job.result, dict) else {}

    def when(name: str) -> Any:
        value = result.get(name)
        return parse_datetime(value) if isinstance(value, str) else None

    return {"expired": bool(result.get("expired")), "expired_at": when("expired_at"),
            "expires_at": when("expires_at"), "days": settings.ARTIFACT_RETENTION_DAYS}


def job_timing(job: GenerationJob) -> tuple[float | None, float | None]:
    """Seconds the current attempt has run, and a linear estimate of the seconds left (None if unknown)."""
    if job.started_at is None:
        return None, None
    end = job.completed_at or timezone.now()
    elapsed = max(0.0, (end - job.started_at).total_seconds())
    if job.status != states.PROCESSING or job.progress <= 0:
        return elapsed, None
    return elapsed, elapsed * (100.0 - job.progress) / job.progress


def captions_track(job: GenerationJob) -> dict[str, str] | None:
    """The `<track>` of a full_video's player: the captions file of its latest completed captions job."""
    from .plans.captions import SOURCE_TYPE

    if job.job_type != SOURCE_TYPE or job.status != states.COMPLETED:
        return None
    captions_job = selectors.job_latest_captions(job=job)
    files = artifact_links(captions_job).get("captions") if captions_job is not None else None
    if not files:
        return None
    # The narration's voice ("en", "en-gb", "de", …) is a BCP 47 tag, which is what srclang wants.
    return {"url": files[0]["url"], "srclang": str((job.params or {}).get("voice") or "en"),
            "captions_job_id": str(captions_job.pk)}


def _apply_action(request: HttpRequest, job: GenerationJob) -> None:
    """The form post's `action` (cancel|retry|rerun with `from_stage`) through the job service; a refusal
    becomes a page message."""
    action = request.POST.get("action")
    try:
        if action == "cancel":
            services.job_cancel(job_id=job.pk)
        elif action in ("retry", "rerun"):
            if not job_create_allowed(request):
                messages.error(request, THROTTLED_TEXT)
                return
            from_stage = request.POST.get("from_stage", "") if action == "rerun" else None
            services.job_retry(job_id=job.pk, from_stage=from_stage)
        else:
            messages.error(request, "Unknown action.")
    except InvalidTransition as exc:
        messages.error(request, exc.reason)
    except InvalidJobInput as exc:  # the cap on waiting jobs (JOBS_MAX_QUEUED_PER_USER), a stage to re-run from
        messages.error(request, exc.message)
    except (StoreUnavailable, StoreRefused) as exc:  # a re-run's check reads the artifact store
        logger.warning("job %s: artifact store error on the page: %s", job.pk, exc)  # its words are for operators
        messages.error(request, "The artifact store is unavailable; try again in a moment.")


def rerun_choices(job: GenerationJob) -> list[tuple[str, str]]:
    """The steps the owner may re-run the job from (none for an external job: its own task does its work)."""
    return [] if job.external else plans.get_plan(job.job_type).step_choices()


@login_required
@require_http_methods(["GET", "POST"])
def job_detail(request: HttpRequest, job_id: str) -> HttpResponse:
    """`/jobs/<id>/`: the job's live state; POST action=cancel|retry is the no-JavaScript fallback, and
    action=rerun with `from_stage` re-runs a finished job from a stage."""
    try:
        job = selectors.job_get_for_user(job_id=job_id, user=request.user)
    except JobNotFound:
        raise Http404("No such job") from None
    if request.method == "POST":
        _apply_action(request, job)
        return redirect(reverse("job-detail", kwargs={"job_id": job.pk}))

    elapsed, remaining = job_timing(job)
    retention = retention_state(job)
    context = {
        "job": job,
        "project": job.project,
        "timeline": job_timeline(list(selectors.job_timeline_events(job_id=job.pk))),
        "artifacts": artifact_links(job),
        "retention": retention,
        # Retention deleted the scenes' files too; their checkpoints stay (a retry renders them again).
        "scene_previews": [] if retention["expired"] else selectors.job_scene_previews(job=job),
        "captions_track": captions_track(job),
        "elapsed_text": format_duration(elapsed),
        "remaining_text": format_duration(remaining),
        "unfinished": job.status in states.UNFINISHED,
        "can_cancel": job.status in states.UNFINISHED,
        "can_retry": job.status in states.RETRYABLE,
        "can_rerun": job.status in states.TERMINAL,
        "rerun_choices": rerun_choices(job),
        "refresh_s": NOSCRIPT_REFRESH_S,
        "queue_text": queue_line(job),
    }
    return render(request, "jobs/detail.html", context)
