"""The pipeline's stage task: BaseTask specialised to run one stage of a job's plan.

Tasks in jobs/tasks.py are one line each (`self.run_stage(job_id, attempt, stage)`); this module holds what
they share. The pipeline (jobs/pipeline) does the work and only sees a StageContext (jobs/running.py).
"""
from __future__ import annotations

import logging
from typing import Any

from . import limits, pipeline, plans, rerun, retention, scenes, services, states
from .basetask import BaseTask
from .conf import JobSettings, job_settings
from .locations import attempt_prefix, key_url
from .models import GenerationJob
from .running import JobStageContext
from .scratch import stage_scratch
from .store import get_store

__all__ = ["JobStageContext", "JobStageTask", "contract_result"]

logger = logging.getLogger(__name__)


def contract_result(job_id: object, job_type: str, files: pipeline.StageFiles) -> dict[str, Any]:
    """The plan's result with CONTRACT.md artifacts: {"kind", "url", "bytes", "content_type", "name", "scene"?}."""
    result = plans.get_plan(job_type).build_result(files)
    result["artifacts"] = [_contract_artifact(job_id, a) for a in result["artifacts"]]
    result["expires_at"] = retention.expires_at()  # when retention will delete them (null: kept)
    return result


def complete_attempt(job_id: str, job_type: str, attempt: int, files: pipeline.StageFiles) -> None:
    """Complete the job with this attempt's result, then drop earlier attempts' objects it does not use.

    job_complete checks under the job's row lock that this attempt still owns the job, so a superseded
    attempt's result (keys under its own prefix) never becomes the job's."""
    result = contract_result(job_id, job_type, files)
    done = services.job_complete(job_id=job_id, result=result, attempt=attempt)
    if done is not None and done.status == states.COMPLETED and done.attempts == attempt:
        retention.drop_other_attempts(job_id, attempt, result)


def _contract_artifact(job_id: object, artifact: dict[str, Any]) -> dict[str, Any]:
    entry = {"kind": artifact["kind"], "url": key_url(job_id, artifact["key"]), "bytes": artifact["bytes"],
             "content_type": artifact["content_type"], "name": artifact["key"].rsplit("/", 1)[-1]}
    scene = artifact.get("meta", {}).get("scene")
    if isinstance(scene, int):  # per-scene artifacts (images, narration) say which scene, 1-based
        entry["scene"] = scene
    return entry


def job_files(job_id: object, attempt: int, scratch: Any) -> pipeline.StageFiles:
    """The stored files of one attempt of a job, with `scratch` as the local working folder."""
    return pipeline.StageFiles(get_store(), attempt_prefix(job_id, attempt), scratch)


def completed_job_files(files: pipeline.StageFiles, job_id: str) -> pipeline.StageFiles:
    """Another job's files as its completed attempt stored them (a completed job's `attempts` is that attempt)."""
    attempt = GenerationJob.objects.filter(pk=job_id).values_list("attempts", flat=True).first()
    if attempt is None:
        raise pipeline.PermanentError("the source job was deleted")
    return files.with_prefix(attempt_prefix(job_id, attempt))


class JobStageTask(BaseTask):
    """Base class of the stage tasks; subclasses (via `@shared_task(base=...)`) just name their stage."""

    abstract = True
    job_per_call = False  # run_stage claims and runs the stage itself
    complete_on_return = False  # only the last stage completes the job, with the plan's result

    def run_stage(self, job_id: str, attempt: int, stage: str, scene: int | None = None) -> dict[str, Any]:
        """Run `stage` of `attempt` of a job once, whatever copies of this message arrive; with `scene`, only
        that scene of a per-scene stage (jobs/scenes.py), under a lease of its own."""
        name = stage if scene is None else scenes.lease_name(stage, scene)
        job = self.claim_job(job_id, attempt, name)
        return self._execute(job, attempt, name, self.request.id or "", job_settings())

    def accepts_stage(self, job: GenerationJob, stage: str) -> bool:
        if scenes.split_lease_name(stage)[0] in plans.get_plan(job.job_type).weights:
            return True
        logger.warning("job %s: a %s job has no stage %s; task %s does nothing", job.pk, job.job_type, stage,
                       self.request.id, extra={"job_id": str(job.pk), "attempt": job.attempts})
        return False

    def starts_job(self, job: GenerationJob, stage: str) -> bool:
        return stage == plans.get_plan(job.job_type).first_stage.name

    def job_context(self, job: GenerationJob, attempt: int, stage: str, conf: JobSettings, *,
                    part: str | None) -> JobStageContext:
        base, scene = scenes.split_lease_name(stage)
        if scene is not None:  # a scene task reports its stage's progress itself (scenes done / scenes)
            return JobStageContext(job_id=str(job.pk), attempt=attempt, stage=stage, conf=conf, part=base,
                                   deadline=self._deadline(job, conf))
        return JobStageContext.for_stage(job_id=str(job.pk), job_type=job.job_type, attempt=attempt, stage=stage,
                                         conf=conf, deadline=self._deadline(job, conf))

    def _time_limits(self, job: GenerationJob) -> tuple[int, int]:
        """(soft, hard) of this task's message: the tasks it sends get the limits the job was dispatched with."""
        hard, soft = tuple(self.request.timelimit or (None, None))
        return (int(soft), int(hard)) if soft and hard else job_settings().time_limits(job.job_type)

    def _stage_label(self, stage: str) -> str:
        base, scene = scenes.split_lease_name(stage)
        return base if scene is None else f"{base} (scene {scene})"

    def _execute(self, job: GenerationJob, attempt: int, stage: str, task_id: str, conf: JobSettings) -> dict[str, Any]:
        """The stage under the heartbeat and error policy (bench/tasks.py replaces it with a no-op stage)."""
        return self.run_guarded(job, attempt, stage, lambda ctx: self._run_plan_stage(job, attempt, stage, ctx))

    def _run_plan_stage(self, job: GenerationJob, attempt: int, stage: str, ctx: JobStageContext) -> dict[str, Any]:
        job_id = str(job.pk)
        plan = plans.get_plan(job.job_type)
        base, scene = scenes.split_lease_name(stage)
        limits_ = self._time_limits(job)
        with stage_scratch(job_id, attempt, stage) as scratch:
            files = job_files(job_id, attempt, scratch)
            inputs = pipeline.StageInputs(files=files, params=plan.clean_params(job.params),
                                          config=limits.pipeline_config(), script=job.project.script,
                                          job_files=lambda other: completed_job_files(files, other))
            if scene is not None:
                return scenes.run_scene(job, attempt, base, scene, inputs, ctx, limits=limits_)
            if rerun.reuses(job, stage):  # a re-run from a later stage: copied from the earlier attempt
                rerun.carry_over(job, attempt, plan.stage(stage), files, ctx)
            else:
                plan.stage(stage).run(inputs, ctx)
            ctx.coalescer.flush()
            ctx.check_cancelled()  # a cancel during the last step wins over completing
            step = plan.group_index(stage)
            if stage == plan.last_stage.name:
                # job_complete checks under the job's row lock that this attempt still owns the job, so a
                # superseded attempt's result (keys under its own prefix) never becomes the job's.
                complete_attempt(job_id, job.job_type, attempt, files)
            elif plan.is_scene_step(step + 1):  # the canvas ended here: the scenes come next
                scenes.fan_out(job, attempt, step + 1, inputs, limits=limits_)
        return {"job_id": job_id, "stage": stage, "outcome": "done"}
