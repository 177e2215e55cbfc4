"""The pipeline's stage task: BaseTask specialised to run one stage of a job's plan.

Tasks in jobs/tasks.py are one line each (`self.run_stage(job_id, attempt, stage)`); this module holds what
they share. The pipeline (jobs/pipeline) does the work and only sees a StageContext (jobs/running.py).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from . import limits, pipeline, plans, services
from .basetask import BaseTask
from .conf import JobSettings, job_settings
from .locations import artifact_url, job_media_dir
from .models import GenerationJob
from .running import JobStageContext

__all__ = ["JobStageContext", "JobStageTask", "contract_result"]

logger = logging.getLogger(__name__)


def contract_result(job_id: object, job_type: str, out_dir: Path) -> dict[str, Any]:
    """The plan's result with CONTRACT.md artifacts: {"kind", "url", "bytes", "content_type", "name", "scene"?}."""
    result = plans.get_plan(job_type).build_result(out_dir)
    result["artifacts"] = [_contract_artifact(job_id, a) for a in result["artifacts"]]
    return result


def _contract_artifact(job_id: object, artifact: dict[str, Any]) -> dict[str, Any]:
    entry = {"kind": artifact["kind"], "url": artifact_url(job_id, artifact["path"]), "bytes": artifact["bytes"],
             "content_type": artifact["content_type"], "name": artifact["path"].rsplit("/", 1)[-1]}
    scene = artifact.get("meta", {}).get("scene")
    if isinstance(scene, int):  # per-scene artifacts (images, narration) say which scene, 1-based
        entry["scene"] = scene
    return entry


class JobStageTask(BaseTask):
    """Base class of the stage tasks; subclasses (via `@shared_task(base=...)`) just name their stage."""

    abstract = True
    job_per_call = False  # run_stage claims and runs the stage itself
    complete_on_return = False  # only the last stage completes the job, with the plan's result

    def run_stage(self, job_id: str, attempt: int, stage: str) -> dict[str, Any]:
        """Run `stage` of `attempt` of a job once, whatever copies of this message arrive."""
        job = self.claim_job(job_id, attempt, stage)
        return self._execute(job, attempt, stage, self.request.id or "", job_settings())

    def accepts_stage(self, job: GenerationJob, stage: str) -> bool:
        if stage in plans.get_plan(job.job_type).weights:
            return True
        logger.warning("job %s: a %s job has no stage %s; task %s does nothing", job.pk, job.job_type, stage,
                       self.request.id, extra={"job_id": str(job.pk), "attempt": job.attempts})
        return False

    def starts_job(self, job: GenerationJob, stage: str) -> bool:
        return stage == plans.get_plan(job.job_type).first_stage.name

    def job_context(self, job: GenerationJob, attempt: int, stage: str, conf: JobSettings, *,
                    part: str | None) -> JobStageContext:
        return JobStageContext.for_stage(job_id=str(job.pk), job_type=job.job_type, attempt=attempt, stage=stage,
                                         conf=conf, deadline=self._deadline(job, conf))

    def _execute(self, job: GenerationJob, attempt: int, stage: str, task_id: str, conf: JobSettings) -> dict[str, Any]:
        """The stage under the heartbeat and error policy (bench/tasks.py replaces it with a no-op stage)."""
        return self.run_guarded(job, attempt, stage, lambda ctx: self._run_plan_stage(job, attempt, stage, ctx))

    def _run_plan_stage(self, job: GenerationJob, attempt: int, stage: str, ctx: JobStageContext) -> dict[str, Any]:
        job_id = str(job.pk)
        out_dir = job_media_dir(job_id)
        out_dir.mkdir(parents=True, exist_ok=True)
        plan = plans.get_plan(job.job_type)
        inputs = pipeline.StageInputs(out_dir=out_dir, params=plan.clean_params(job.params),
                                      config=limits.pipeline_config(), script=job.project.script,
                                      job_dir=job_media_dir)
        plan.stage(stage).run(inputs, ctx)
        ctx.coalescer.flush()
        ctx.check_cancelled()  # a cancel during the last step wins over completing
        if stage == plan.last_stage.name:
            services.job_complete(job_id=job_id, result=contract_result(job_id, job.job_type, out_dir),
                                  attempt=attempt)
        return {"job_id": job_id, "stage": stage, "outcome": "done"}
