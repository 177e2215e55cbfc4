"""Pre-flight validation of a new job: its type, its params (the pipeline's schema) and the script."""
from __future__ import annotations

from . import states
from .exceptions import InvalidJobInput


def validate_job_input(*, job_type: str, params: dict | None, script: str | None) -> dict:
    """Return normalised params, or raise InvalidJobInput naming the field and the reason."""
    from .pipeline import PipelineConfig, ValidationError, validate_params, validate_script

    if job_type not in states.JOB_TYPES:
        raise InvalidJobInput("job_type", f"unknown job type {job_type!r}; allowed: {', '.join(states.JOB_TYPES)}")
    try:
        clean = validate_params(job_type, params)
        if script is not None:
            # The job's own scene limit applies before it starts, not only in its parse stage.
            validate_script(script, PipelineConfig.from_env(), max_scenes=clean.get("max_scenes"))
    except ValidationError as exc:
        raise InvalidJobInput(exc.field, exc.message) from None
    return clean
