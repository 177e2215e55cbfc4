"""A job's recorded history as the live streams (websockets, SSE) read it: current seqs and replay pages.

Each read is one short `database_sync_to_async` hop, so a waiting socket or stream holds no connection.
"""
from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from jobs import selectors as job_selectors
from jobs.models import GenerationJob

from . import events

REPLAY_BATCH = 500  # events per replay page: a long history is sent a page at a time


@database_sync_to_async
def latest_seqs(job_ids: list[str]) -> dict[str, int]:
    """The current seq of each job (one query)."""
    return {str(pk): seq for pk, seq in GenerationJob.objects.filter(pk__in=job_ids).values_list("pk", "seq")}


@database_sync_to_async
def replay_page(job_id: str, after_seq: int, before_seq: int | None, *,
                owner: Any = None) -> list[dict[str, Any]] | None:
    """Up to REPLAY_BATCH of the job's events after `after_seq` (and before `before_seq`), as messages; None
    when the job is gone or, with `owner`, not (or no longer) theirs: ownership is read with every page."""
    jobs = GenerationJob.objects.filter(pk=job_id)
    if owner is not None:
        jobs = jobs.filter(project__owner=owner)
    job = jobs.first()
    if job is None:
        return None
    query = job_selectors.job_events(job_id=job_id, after_seq=after_seq)
    if before_seq is not None:
        query = query.filter(seq__lt=before_seq)
    return [events.replay_message(event, job) for event in query[:REPLAY_BATCH]]
