"""Celery entry points: thin wrappers that take ids and hand over to jobs.worker / jobs.reaper.

One stage task per stage of the registered job plans (jobs/plans), created below; jobs.dispatch builds
each job's canvas from its plan, and jobs.plans.routing routes the tasks.
"""
from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from .plans import REGISTRY, Stage
from .worker import JobStageTask


def _stage_task(stage: Stage) -> Task:
    """The task running `stage` of a job attempt: `jobs.tasks.<stage.task>` (job id, attempt[, scene]); a
    per-scene stage's task runs one scene (jobs/scenes.py), or every scene when sent without one."""

    def run(self: JobStageTask, job_id: str, attempt: int, scene: int | None = None) -> dict[str, Any]:
        return self.run_stage(job_id, attempt, stage.name, scene)

    run.__name__ = run.__qualname__ = stage.task
    run.__doc__ = f"The {stage.name} stage of a job attempt (queue and order come from the job's plan)."
    return shared_task(bind=True, base=JobStageTask, name=stage.task_name)(run)


STAGE_TASKS: dict[str, Task] = {name: _stage_task(stage) for name, stage in REGISTRY.stage_tasks().items()}
# Also module attributes under the names Celery knows them by (jobs.tasks.parse_script_task, …).
globals().update(STAGE_TASKS)


@shared_task(name="jobs.tasks.reap_jobs_task", acks_late=False)
def reap_jobs_task() -> dict[str, Any]:
    """Periodic: requeue jobs whose worker was lost, dispatch queued jobs that have no task."""
    from .reaper import reap_jobs

    return reap_jobs().as_dict()


@shared_task(name="jobs.tasks.cleanup_results_task", acks_late=False)
def cleanup_results_task() -> int:
    """Periodic: delete task results older than CELERY_RESULT_EXPIRES."""
    from .reaper import cleanup_task_results

    return cleanup_task_results()


@shared_task(name="jobs.tasks.terminate_cancelled_job_task", acks_late=False)
def terminate_cancelled_job_task(job_id: str, attempt: int) -> list[str]:
    """After the cancel grace period: terminate stages of a cancelled job that did not stop by themselves."""
    from .dispatch import terminate_stages

    return terminate_stages(job_id=job_id, attempt=attempt)


@shared_task(name="jobs.tasks.sweep_media_task", acks_late=False)
def sweep_media_task() -> dict[str, int]:
    """Periodic: remove killed stages' leftovers and the folders of deleted jobs (jobs/media_sweep.py)."""
    from .media_sweep import media_sweep

    return media_sweep().as_dict()


@shared_task(name="jobs.tasks.expire_artifacts_task", acks_late=False)
def expire_artifacts_task() -> dict[str, int]:
    """Periodic: delete finished jobs' artifacts past ARTIFACT_RETENTION_DAYS, in batches (jobs/retention.py)."""
    from .retention import expire_artifacts

    return expire_artifacts().as_dict()


@shared_task(name="jobs.tasks.enforce_deadlines_task", acks_late=False)
def enforce_deadlines_task() -> dict[str, Any]:
    """Periodic (every few seconds): expire jobs waiting past start_timeout_s, fail jobs running past
    max_runtime_s, then one admission pass (jobs/deadlines.py)."""
    from .deadlines import enforce_deadlines

    return enforce_deadlines()
