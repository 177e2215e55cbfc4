"""captions: WebVTT captions timed to the narration of a completed full_video job, and its video with them burned in.

The worked example of docs/JOB_TYPES.md: this module plus one registration line in jobs/plans/__init__.py.
"""
from __future__ import annotations

from typing import Any

from jobs import queues
from jobs.pipeline import captions
from jobs.pipeline.errors import ValidationError

from .params import JobRefParam
from .plan import JobPlan, Stage

SOURCE_TYPE = "full_video"


def resolve_source(project: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Pin `source_job_id` to a completed full_video of this project (default: the latest one)."""
    from jobs import selectors

    completed = selectors.jobs_completed_of_type(project=project, job_type=SOURCE_TYPE)
    source_id = params["source_job_id"]
    if source_id is None:
        latest = completed.values_list("pk", flat=True).first()
        if latest is None:
            raise ValidationError("source_job_id", f"the project has no completed {SOURCE_TYPE} job to caption yet")
        return {**params, "source_job_id": str(latest)}
    if not completed.filter(pk=source_id).exists():
        raise ValidationError("source_job_id", f"must be a completed {SOURCE_TYPE} job of the same project")
    return params


PLAN = JobPlan(
    job_type="captions",
    label="Captions",
    description="Captions timed to the narration of a finished full video, and the video with them burned in.",
    steps=(
        Stage("captions", captions.captions_stage, queue=queues.VIDEO, weight=5, kind="captions",
              task="write_captions_task"),
        Stage("burn", captions.burn_stage, queue=queues.VIDEO, weight=95, kind="video", task="burn_captions_task"),
    ),
    params={
        "source_job_id": JobRefParam(SOURCE_TYPE, "The completed full video to caption; default: the project's latest."),
    },
    parses_script=False,
    resolve=resolve_source,
    summary=captions.captions_summary,
)
