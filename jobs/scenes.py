"""Per-scene stages: one Celery task per scene, work reused across attempts, the join before assembly.

A plan stage with `per_scene` (jobs/plans/plan.py) runs as one task per scene on its queue, so a job's
scenes spread over every worker of that queue. The flow of one attempt:

1. The step before the per-scene step (the parse) ends with `fan_out`: each scene's fingerprint is compared
   with its checkpoint (jobs/checkpoints.py); a scene done by an earlier attempt with the same inputs and a
   file still there is reused (an `artifact` event whose message says `reused`), the rest are sent as
   scene tasks (jobs.dispatch.scene_signature).
2. A scene task (`run_scene`, under BaseTask's lease, heartbeat and cancellation, its lease named
   `<stage>.<scene>`) renders its scene, records it (an `artifact` event), reports the stage's progress
   (scenes done / scenes) and, if it was the last scene of the step to finish, joins.
3. `join`: counted from the checkpoints, never from Celery results (which the result cleanup may delete):
   the stage manifests are written in scene order and the rest of the plan is sent (assembly), or the job
   completes when the per-scene step was the last one.

A lost worker, a cancel and a retry need nothing else: a scene task is a stage task with its own lease (the
reaper sees it), a cancelled attempt's scene tasks stop at their next check or are not started at all, and
the next attempt's fan-out reuses what the earlier one finished.
"""
from __future__ import annotations

import logging
from functools import partial
from typing import Any

from . import checkpoints, leases, services
from .locations import key_url
from .models import GenerationJob, SceneCheckpoint
from .pipeline import PermanentError, PipelineError, StageInputs, TransientError, load_scenes
from .pipeline.artifacts import Artifact
from .pipeline.store import ArtifactMissing, ArtifactStore
from .pipeline.context import StageContext
from .plans import JobPlan, Stage, get_plan

logger = logging.getLogger(__name__)

LABELS = {"image": "images", "audio": "narration"}


def lease_name(stage: str, scene: int) -> str:
    """The stage lease of one scene task: `images.3`."""
    return f"{stage}.{scene}"


def split_lease_name(name: str) -> tuple[str, int | None]:
    """`images.3` -> ("images", 3); a whole stage's name -> (name, None)."""
    stage, _, scene = name.partition(".")
    return (stage, int(scene)) if scene.isdigit() else (name, None)


def _exists(store: ArtifactStore, row: SceneCheckpoint) -> bool:
    """The checkpoint's object is still in the store, whole (retention may have deleted it)."""
    try:
        return bool(row.name) and store.size(row.name) == row.bytes
    except ArtifactMissing:
        return False


def _url(job_id: str) -> checkpoints.Url:
    return partial(key_url, job_id)


def _report(job_id: str, attempt: int, stage: Stage, done: int, total: int) -> None:
    services.job_report_progress(job_id=job_id, progress=done / max(1, total) * 100.0, part=stage.name,
                                 stage=f"Generating {LABELS.get(stage.kind, stage.name)} ({done}/{total})",
                                 attempt=attempt)


Limits = tuple[int, int]  # (soft, hard) seconds of each task sent: those the job was dispatched with


def fan_out(job: GenerationJob, attempt: int, step: int, inputs: StageInputs, *, limits: Limits) -> None:
    """Send the scene tasks of per-scene step `step` that this attempt still needs; join at once if none."""
    job_id = str(job.pk)
    plan = get_plan(job.job_type)
    stages = plan.groups[step]
    scenes = load_scenes(inputs.files)
    total = len(scenes)
    specs = [checkpoints.SceneSpec(stage.name, stage.kind, scene.index,
                                   stage.per_scene.fingerprint(scene, total=total, params=inputs.params,
                                                               config=inputs.config))
             for scene in scenes for stage in stages if stage.per_scene is not None]
    planned = checkpoints.plan_scenes(job_id=job_id, attempt=attempt, specs=specs, total=total,
                                      exists=partial(_exists, inputs.files.store), url=_url(job_id))
    if planned is None:
        return
    for stage in stages:
        if planned.done.get(stage.kind):
            _report(job_id, attempt, stage, planned.done[stage.kind], total)
    logger.info("job %s: %s scene tasks to run, %s reused", job_id, len(planned.to_render), planned.reused,
                extra={"job_id": job_id, "attempt": attempt})
    if planned.complete:
        join(job, attempt, step, inputs, limits=limits)
        return
    from .dispatch import scene_signature

    by_name = {stage.name: stage for stage in stages}
    for spec in planned.to_render:
        scene_signature(by_name[spec.stage], job_id=job_id, attempt=attempt, scene=spec.scene,
                        limits=limits).apply_async(retry=False)


def run_scene(job: GenerationJob, attempt: int, stage_name: str, scene_index: int, inputs: StageInputs,
              ctx: StageContext, *, limits: Limits) -> dict[str, Any]:
    """Render one scene of a per-scene stage, record it, and join if it was the step's last."""
    job_id = str(job.pk)
    plan = get_plan(job.job_type)
    stage = plan.stage(stage_name)
    work = stage.per_scene
    if work is None:
        raise PermanentError(f"the {stage_name} stage does not run per scene")
    scenes = load_scenes(inputs.files)
    scene = next((s for s in scenes if s.index == scene_index), None)
    if scene is None:
        raise PermanentError(f"Scene {scene_index} is not in the script any more")
    total = len(scenes)
    spec = checkpoints.SceneSpec(stage.name, stage.kind, scene.index,
                                 work.fingerprint(scene, total=total, params=inputs.params, config=inputs.config))
    if not checkpoints.scene_started(job_id=job_id, attempt=attempt, kind=stage.kind, scene=scene.index,
                                     worker=leases.worker_identity()):
        return {"job_id": job_id, "stage": stage_name, "scene": scene_index, "outcome": "not needed"}
    artifact, digest = _render(work, scene, inputs, total, job_id=job_id, attempt=attempt)
    ctx.check_cancelled()  # a cancel during the render wins: nothing is recorded
    step = plan.group_index(stage.name)
    finished = checkpoints.scene_finished(
        job_id=job_id, attempt=attempt, spec=spec, name=artifact.key, size=artifact.bytes,
        content_type=artifact.content_type, sha256=digest, meta=artifact.meta, url=_url(job_id),
        step_kinds=[s.kind for s in plan.groups[step]], total=total)
    if finished is None:
        return {"job_id": job_id, "stage": stage_name, "scene": scene_index, "outcome": "stopped"}
    _report(job_id, attempt, stage, finished.done.get(stage.kind, 0), total)
    if finished.complete:
        join(job, attempt, step, inputs, limits=limits)
    return {"job_id": job_id, "stage": stage_name, "scene": scene_index, "outcome": "done"}


def _render(work: Any, scene: Any, inputs: StageInputs, total: int, *, job_id: str,
            attempt: int) -> tuple[Artifact, str]:
    """The scene's stored artifact and its sha256; a pipeline error names the scene (a transient one is
    still retried)."""
    try:
        return work.render(scene, inputs.files, total=total, params=inputs.params, config=inputs.config)
    except PipelineError as exc:
        if not isinstance(exc, TransientError):
            checkpoints.scene_failed(job_id=job_id, attempt=attempt, kind=work.kind, scene=scene.index)
        kind = TransientError if isinstance(exc, TransientError) else PermanentError
        raise kind(f"Scene {scene.index}: {exc.message}", detail=exc.detail) from exc


def step_artifacts(job_id: str, stage: Stage) -> list[Artifact]:
    """The stage's scene artifacts from its checkpoints, in scene order (keys of whichever attempt made them:
    each attempt stores under its own prefix, and a reused artifact stays where its attempt put it)."""
    return [Artifact(key=row.name, kind=row.kind, content_type=row.content_type, bytes=row.bytes,
                     meta=dict(row.meta)) for row in checkpoints.scene_rows(job_id=job_id, kind=stage.kind)
            if row.state == SceneCheckpoint.DONE]


def join(job: GenerationJob, attempt: int, step: int, inputs: StageInputs, *, limits: Limits) -> None:
    """Every scene of step `step` is done: write its manifests, then run the rest of the plan.

    Idempotent (a repeated join writes the same manifests, and the next stage's lease or the finished job
    makes a second send do nothing), so a scene task retried after a failed send may join again."""
    job_id = str(job.pk)
    plan = get_plan(job.job_type)
    for stage in plan.groups[step]:
        assert stage.per_scene is not None
        stage.per_scene.finish(inputs.files, step_artifacts(job_id, stage))
    continue_after(job, attempt, step, inputs, plan, limits=limits)


def continue_after(job: GenerationJob, attempt: int, step: int, inputs: StageInputs, plan: JobPlan, *,
                   limits: Limits) -> None:
    """What follows step `step`: the job's completion, a per-scene fan-out, or the rest as a canvas."""
    job_id = str(job.pk)
    following = step + 1
    if following == len(plan.groups):
        from .worker import complete_attempt

        complete_attempt(job_id, job.job_type, attempt, inputs.files)
    elif plan.is_scene_step(following):
        fan_out(job, attempt, following, inputs, limits=limits)
    else:
        from .dispatch import plan_canvas

        plan_canvas(plan, job_id=job_id, attempt=attempt, limits=limits, start=following).apply_async(retry=False)
