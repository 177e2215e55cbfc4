"""Job types as declared plans: one module per job type, registered below (docs/JOB_TYPES.md).

Everything that differs between job types is read from here: dispatch's canvas, the worker's stages,
Celery routes, progress weights, metrics labels, the API's `job_type` choices and the project page's forms.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobs.pipeline.artifacts import StageFiles
from jobs.pipeline.config import PipelineConfig
from jobs.pipeline.context import StageContext
from jobs.pipeline.runner import StageInputs

from . import audio_generation, captions, full_video, image_generation
from .plan import JobPlan, Stage, parallel
from .registry import PlanRegistry

REGISTRY = PlanRegistry()
# One line per job type, in the order the project page and the API list them.
REGISTRY.register(full_video.PLAN)
REGISTRY.register(image_generation.PLAN)
REGISTRY.register(audio_generation.PLAN)
REGISTRY.register(captions.PLAN)

get_plan = REGISTRY.get

# Derived once: the registry is complete when this module has been imported.
JOB_TYPES: tuple[str, ...] = tuple(plan.job_type for plan in REGISTRY.all())
JOB_TYPE_CHOICES: list[tuple[str, str]] = [(plan.job_type, plan.label) for plan in REGISTRY.all()]
STAGE_WEIGHTS: dict[str, dict[str, float]] = {plan.job_type: plan.weights for plan in REGISTRY.all()}
PARAMS_SCHEMA: dict[str, dict[str, Any]] = {plan.job_type: plan.params_schema() for plan in REGISTRY.all()}
ARTIFACT_KINDS: tuple[str, ...] = tuple(dict.fromkeys(s.kind for plan in REGISTRY.all() for s in plan.stages))


def job_type_choices() -> list[tuple[str, str]]:
    """The model field's choices; a callable, so a new job type needs no migration."""
    return list(JOB_TYPE_CHOICES)


def validate_params(job_type: str, params: Any) -> dict[str, Any]:
    """`params` checked against `job_type`'s plan with defaults filled in; pipeline.ValidationError otherwise."""
    return get_plan(job_type).clean_params(params)


def default_params(job_type: str) -> dict[str, Any]:
    """The parameters a job of `job_type` gets when none are given."""
    return validate_params(job_type, None)


def stage_ranges(job_type: str) -> dict[str, tuple[float, float]]:
    return get_plan(job_type).stage_ranges()


def build_result(job_type: str, files: StageFiles) -> dict[str, Any]:
    return get_plan(job_type).build_result(files)


def run_job(job_type: str, script: str | None, params: dict[str, Any] | None, files: StageFiles, ctx: StageContext,
            *, config: PipelineConfig, job_files: Callable[[str], StageFiles] | None = None) -> dict[str, Any]:
    """Validate, run every stage of `job_type` in this process and return the result (tests, benchmarks).

    `job_files` finds other jobs' stored files (a captions job reads its source video's); `resolve` is not run here.
    """
    inputs = StageInputs(files=files, params=params or {}, config=config, script=script, job_files=job_files)
    return get_plan(job_type).run_in_process(inputs, ctx)


def run_stage(stage: str, files: StageFiles, ctx: StageContext, *, params: dict[str, Any], config: PipelineConfig,
              script: str | None = None) -> list[Any]:
    """Run one stage by name, reading its inputs from `files` (as a separate task per stage does)."""
    named = {s.name: s for s in REGISTRY.stage_tasks().values()}
    if stage not in named:
        raise ValueError(f"unknown stage {stage!r}; expected one of {tuple(named)}")
    return named[stage].run(StageInputs(files=files, params=params, config=config, script=script), ctx)


__all__ = [
    "ARTIFACT_KINDS", "JOB_TYPES", "JOB_TYPE_CHOICES", "PARAMS_SCHEMA", "REGISTRY", "STAGE_WEIGHTS", "JobPlan", "Stage",
    "build_result", "default_params", "get_plan", "job_type_choices", "parallel", "run_job", "run_stage",
    "stage_ranges", "validate_params",
]
