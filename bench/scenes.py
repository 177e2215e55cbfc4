"""Per-scene tasks: what a retry after a cancel costs, and how a job's scenes spread over the image pool.

Scene images come from a loopback Stable Diffusion-compatible server (tests/e2e/fake_backend.py) that takes
SCENE_S seconds per image, standing in for GPU time; narration is the real espeak-ng (or tone), assembly the
real ffmpeg. Times are the job's own: `completed_at - started_at` of the attempt measured.

- `retry_after_half_cost_ratio`: a 20-scene full video on 2 image workers is run to the end (the baseline,
  `scenes_full_run_s`); the same job is run again, cancelled once half its images are stored, and retried:
  the retry's wall time over the full run's (target ≤ 0.6: the retry renders only the other half).
- `scene_parallel_speedup`: a 20-scene image job on 1 image worker process (the baseline,
  `scenes_one_worker_s`) over the same on 2 (`scenes_two_workers_s`) (target ≥ 1.7), with the production
  worker settings; the `_no_recycle` keys measure it again without pool-child recycling.
"""
from __future__ import annotations

import time
from typing import Any

from jobs import queues

from . import common

SCENES = 20
NOT_IMAGES = ",".join(name for name in queues.ALL if name not in (queues.IMAGE, queues.WEBHOOKS))
SMALL = {"width": 160, "height": 90, "fps": 5}


def _script(tag: str, scene_s: float) -> str:
    from tests.e2e.fake_backend import script

    return script(*(f"{tag} [slow:{scene_s}] scene {n}." for n in range(SCENES)))


def _wait(job_id: str, statuses: set[str], timeout: float = 600.0) -> Any:
    from jobs.models import GenerationJob

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = GenerationJob.objects.get(pk=job_id)
        if job.status in statuses:
            return job
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} did not become {statuses} within {timeout} s")


def _run_s(job: Any) -> float:
    return round((job.completed_at - job.started_at).total_seconds(), 3)


def _pools(backend_url: str, image_workers: int, **worker_env: str) -> Any:
    group = common.process_group()
    env = {"SD_API_URL": backend_url, **worker_env}
    for n in range(image_workers):
        group.start_worker(f"scene-images-{n}", queues=queues.IMAGE, concurrency=1, wait=False, **env)
    group.start_worker("scene-others", queues=NOT_IMAGES, concurrency=2, wait=False, **env)
    group.wait_ready()
    return group


def _job(user: Any, job_type: str, script: str) -> str:
    from jobs import services
    from projects.models import Project

    project = Project.objects.create(owner=user, name="bench scenes", script=script)
    params = SMALL if job_type == "full_video" else {"width": 160, "height": 90}
    return str(services.job_create(project=project, job_type=job_type, params=params).pk)


def retry_cost(user: Any, backend_url: str, scene_s: float) -> dict[str, Any]:
    from jobs import services, states
    from jobs.models import JobEvent, SceneCheckpoint

    group = _pools(backend_url, image_workers=2)
    try:
        full = _wait(_job(user, "full_video", _script("Full", scene_s)), {states.COMPLETED})
        job_id = _job(user, "full_video", _script("Half", scene_s))
        deadline = time.monotonic() + 300
        while SceneCheckpoint.objects.filter(job_id=job_id, kind="image", state="done").count() < SCENES // 2:
            if time.monotonic() > deadline:
                raise TimeoutError("half the images were not stored in time")
            time.sleep(0.02)
        services.job_cancel(job_id=job_id)
        time.sleep(1.0)  # the running scene tasks stop
        services.job_retry(job_id=job_id)
        retried = _wait(job_id, {states.COMPLETED, states.FAILED})
        rendered = JobEvent.objects.filter(job_id=job_id, kind="artifact", attempt=2, message__contains="rendered")
        reused = JobEvent.objects.filter(job_id=job_id, kind="artifact", attempt=2, message__contains="reused")
    finally:
        group.stop_all()
    return {"scenes_full_run_s": _run_s(full), "scenes_retry_run_s": _run_s(retried),
            "retry_after_half_cost_ratio": round(_run_s(retried) / _run_s(full), 3),
            "scenes_retry_rendered": rendered.count(), "scenes_retry_reused": reused.count(),
            "scenes_retry_status": retried.status, "scenes_scene_s": scene_s}


def parallel_speedup(user: Any, backend_url: str, scene_s: float, **worker_env: str) -> dict[str, Any]:
    from jobs import states

    times = {}
    for workers in (1, 2):
        group = _pools(backend_url, image_workers=workers, **worker_env)
        try:
            job = _wait(_job(user, "image_generation", _script(f"Pool{workers}", scene_s)), {states.COMPLETED})
            times[workers] = _run_s(job)
        finally:
            group.stop_all()
    return {"scenes_one_worker_s": times[1], "scenes_two_workers_s": times[2],
            "scene_parallel_speedup": round(times[1] / times[2], 3)}


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    from tests.e2e.fake_backend import FakeBackend

    scene_s = 0.15 if quick else 1.0
    user, _ = common.make_user_with_token()
    backend = FakeBackend().start()
    try:
        out = parallel_speedup(user, backend.url, scene_s)
        if not quick:  # a quick run is smaller by design: no second set of pools and jobs for the repeat
            # The same without pool-child recycling (CELERY_WORKER_MAX_TASKS_PER_CHILD, default 10): a recycled
            # child costs seconds (BENCHMARKS: celery/celery#9588), and one task per scene recycles every 10 scenes.
            plain = parallel_speedup(user, backend.url, scene_s, CELERY_WORKER_MAX_TASKS_PER_CHILD="1000000")
            out.update({f"{key}_no_recycle": value for key, value in plain.items()})
        out.update(retry_cost(user, backend.url, scene_s))
    finally:
        backend.stop()
    return out
