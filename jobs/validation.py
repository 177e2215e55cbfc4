"""Pre-flight validation of a new job: its type, its params (the job type's plan) and the script."""
from __future__ import annotations

from typing import Any

from .exceptions import InvalidJobInput


def validate_job_input(*, job_type: str, params: dict | None, script: str | None, project: Any = None) -> dict:
    """Return normalised params, or raise InvalidJobInput naming the field and the reason.

    `project` is needed by plans whose params point at other jobs of the project (their `resolve` step).
    """
    from .pipeline import PipelineConfig, ValidationError, validate_script
    from .plans import get_plan

    try:
        plan = get_plan(job_type)
    except ValidationError:
        from .plans import JOB_TYPES

        raise InvalidJobInput("job_type", f"unknown job type {job_type!r}; allowed: {', '.join(JOB_TYPES)}") from None
    try:
        clean = plan.clean_params(params)
        if script is not None and plan.parses_script:
            # The job's own scene limit applies before it starts, not only in its parse stage.
            validate_script(script, PipelineConfig.from_env(), max_scenes=clean.get("max_scenes"))
        if plan.resolve is not None:
            if project is None:
                raise ValueError(f"{job_type} jobs are validated against their project; pass project=")
            clean = plan.resolve(project, clean)
    except ValidationError as exc:
        raise InvalidJobInput(exc.field, exc.message) from None
    return clean
