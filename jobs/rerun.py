"""Re-running a job from a stage: the stages before it are taken from an earlier attempt, not run again.

A from-stage retry (services.job_retry with `from_stage`) records on the job the stage the new attempt starts
at (`rerun_from`) and the attempt it takes the earlier stages' outputs from (`rerun_source`, checked here at
request time: its manifests must be stored). The attempt itself starts as every attempt does, with the plan's
first stage task, so admission, claims, leases and the reaper are unchanged; then:

- a whole stage before the start step does not run: `carry_over` copies its manifest and files from the
  source attempt's prefix into this attempt's and records `reused` artifact events. Copies, not pointers:
  once this attempt completes, `retention.drop_other_attempts` deletes the earlier attempts' objects its
  result does not list (scenes.json is not listed), and a later re-run must still find them here;
- a per-scene step before it goes through the normal fan-out, which reuses every scene whose fingerprint
  matches and whose file still exists (jobs/scenes.py) and renders the others again.

The start step and every later one run as usual.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from . import states
from .exceptions import InvalidJobInput
from .locations import attempt_prefix
from .models import GenerationJob
from .pipeline.artifacts import Artifact, StageFiles
from .pipeline.context import StageContext
from .pipeline.errors import PermanentError
from .plans import JobPlan, Stage, get_plan
from .store import get_store


def start_step(plan: JobPlan, from_stage: str) -> int:
    """The number of the step that runs `from_stage` (0 for "" or a stage the plan no longer has)."""
    try:
        return plan.group_index(from_stage) if from_stage else 0
    except KeyError:
        return 0


def stages_before(plan: JobPlan, from_stage: str) -> tuple[Stage, ...]:
    """Every stage of the steps before the one that runs `from_stage`."""
    return tuple(stage for group in plan.groups[:start_step(plan, from_stage)] for stage in group)


def check_rerun(job: GenerationJob, from_stage: str) -> int:
    """The attempt a re-run of `job` from `from_stage` takes the earlier stages from. InvalidJobInput naming
    `from_stage` when the plan has no such stage or, for a finished job, no attempt to take them from stored
    them (an unfinished job is refused by the transition: 409). Reads the store: StoreUnavailable /
    StoreRefused when it is down."""
    plan = get_plan(job.job_type)
    names = [stage.name for stage in plan.stages]
    if from_stage not in names:
        raise InvalidJobInput("from_stage", f"a {job.job_type} job has no stage {from_stage!r}; "
                                            f"it can be re-run from one of: {', '.join(names)}")
    if job.status not in states.TERMINAL:
        return job.attempts
    needed = stages_before(plan, from_stage)
    for source in _sources(job, plan, from_stage):
        if _first_missing(job, source, needed) is None:
            return source
    stage = _first_missing(job, job.attempts, needed)
    raise InvalidJobInput("from_stage", f"attempt {job.attempts} did not finish the {stage} stage (or its files "
                                        f"expired), so a re-run from {from_stage!r} has nothing to start with; "
                                        "re-run from an earlier stage")


def _sources(job: GenerationJob, plan: JobPlan, from_stage: str) -> list[int]:
    """Where the stages before `from_stage` may come from: the job's latest attempt; and when that attempt was
    itself a re-run taking all of them from an earlier one (it may have been cancelled before copying them),
    that earlier attempt, so a re-run cancelled at once can be asked for again."""
    sources = [job.attempts]
    if job.rerun_source is not None and start_step(plan, from_stage) <= start_step(plan, job.rerun_from):
        sources.append(job.rerun_source)
    return sources


def _first_missing(job: GenerationJob, attempt: int, stages: tuple[Stage, ...]) -> str | None:
    """The first of `stages` whose manifest `attempt` did not store (None: it stored them all)."""
    files = StageFiles(get_store(), attempt_prefix(job.pk, attempt), scratch=Path("."))
    return next((stage.name for stage in stages if not files.has_manifest(stage.kind)), None)


def reuses(job: GenerationJob, stage: str) -> bool:
    """Whether the job's current attempt takes whole stage `stage` from its source attempt instead of running it."""
    if not job.rerun_from or job.rerun_source is None:
        return False
    plan = get_plan(job.job_type)
    return stage in {s.name for s in stages_before(plan, job.rerun_from)} and plan.stage(stage).per_scene is None


def carry_over(job: GenerationJob, attempt: int, stage: Stage, files: StageFiles, ctx: StageContext) -> list[Artifact]:
    """Copy `stage`'s manifest and files from the source attempt into this attempt's prefix (the manifest
    last: its presence means the stage is done) and record them as reused. Small files only (a scene list,
    captions): the stages that make big ones come last in a plan, so nothing is ever re-run after them."""
    from . import services

    source = job.rerun_source
    assert source is not None
    ctx.report(0.0, f"Reusing the {stage.name} stage of attempt {source}")
    earlier = files.with_prefix(attempt_prefix(job.pk, source))
    if not earlier.has_manifest(stage.kind):  # checked when asked for, but retention may have come since
        raise PermanentError(f"the {stage.name} stage of attempt {source} is no longer stored; re-run from an "
                             "earlier stage")
    copied = [_copy(files, earlier.prefix, artifact) for artifact in earlier.load_artifacts(stage.kind)]
    files.write_manifest(stage.kind, copied)
    services.job_record_reused(job_id=job.pk, attempt=attempt, stage=stage.name, source=source, artifacts=copied)
    ctx.report(100.0, f"Reused the {stage.name} stage of attempt {source}")
    return copied


def _copy(files: StageFiles, source_prefix: str, artifact: Artifact) -> Artifact:
    """`artifact` stored again under `files`' prefix, at the same place relative to the attempt."""
    relative = artifact.key.removeprefix(source_prefix + "/")
    if relative == artifact.key:  # not the source attempt's own file: nothing to move
        return artifact
    store = files.store
    key = files.key(relative)
    store.put_bytes(key, store.read_bytes(artifact.key), artifact.content_type)
    return replace(artifact, key=key)
