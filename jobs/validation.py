"""Pre-flight validation of a new job: its type, its params (the job type's plan), the script and its size."""
from __future__ import annotations

from typing import Any

from .exceptions import InvalidJobInput
from .limits import check_job_size


def validate_job_input(*, job_type: str, params: dict | None, script: str | None, project: Any = None) -> dict:
    """Return normalised params, or raise InvalidJobInput naming the field and the reason.

    `project` is needed by plans whose params point at other jobs of the project (their `resolve` step).
    """
    from .pipeline import PipelineConfig, ValidationError, parse_script
    from .plans import get_plan

    try:
        plan = get_plan(job_type)
    except ValidationError:
        from .plans import JOB_TYPES

        raise InvalidJobInput("job_type", f"unknown job type {job_type!r}; allowed: {', '.join(JOB_TYPES)}") from None
    scenes = None
    try:
        clean = plan.clean_params(params)
        if script is not None and plan.parses_script:
            # The job's own scene limit applies before it starts, not only in its parse stage; scenes are
            # timed at the job's own speaking rate, as its parse stage will time them.
            scenes = parse_script(script, config=PipelineConfig.from_env(), max_scenes=clean.get("max_scenes"),
                                  words_per_minute=clean.get("rate_wpm"))
        if plan.resolve is not None:
            if project is None:
                raise ValueError(f"{job_type} jobs are validated against their project; pass project=")
            clean = plan.resolve(project, clean)
    except ValidationError as exc:
        raise InvalidJobInput(exc.field, exc.message) from None
    if scenes is not None:
        check_job_size(job_type=job_type, params=clean, durations=[s.duration_s for s in scenes])
    return clean
