"""Celery entry points: thin wrappers that take ids and hand over to jobs.worker / jobs.reaper.

Routing (settings.CELERY_TASK_ROUTES) puts each stage on its queue; jobs.dispatch builds the canvas.
"""
from __future__ import annotations

from typing import Any

from celery import shared_task

from .worker import JobStageTask


@shared_task(bind=True, base=JobStageTask, name="jobs.tasks.parse_script_task")
def parse_script_task(self: JobStageTask, job_id: str, attempt: int) -> dict[str, Any]:
    """Stage 1 of every job: start the job and split its script into scenes."""
    return self.run_stage(job_id, attempt, "parse")


@shared_task(bind=True, base=JobStageTask, name="jobs.tasks.generate_images_task")
def generate_images_task(self: JobStageTask, job_id: str, attempt: int) -> dict[str, Any]:
    """One image per scene (image_generation queue)."""
    return self.run_stage(job_id, attempt, "images")


@shared_task(bind=True, base=JobStageTask, name="jobs.tasks.generate_narration_task")
def generate_narration_task(self: JobStageTask, job_id: str, attempt: int) -> dict[str, Any]:
    """Narration per scene (audio_generation queue)."""
    return self.run_stage(job_id, attempt, "audio")


@shared_task(bind=True, base=JobStageTask, name="jobs.tasks.assemble_video_task")
def assemble_video_task(self: JobStageTask, job_id: str, attempt: int) -> dict[str, Any]:
    """The MP4 from images and narration (video_generation queue); completes the job."""
    return self.run_stage(job_id, attempt, "video")


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
