"""Storage: the same `full_video` job with artifacts in an S3 bucket vs under a shared MEDIA_ROOT, and
artifact downloads through the API's 302 vs straight from the store.

The bucket is moto's standalone server (`moto_server`, started here on loopback, as the tests start it), reached
directly, without the stoppable proxy the tests put in front of it.
Jobs run through the production dispatch on one worker per queue (concurrency 1 each): with `local`, the
three share the run's MEDIA_ROOT (one machine); with `s3`, each has an empty MEDIA_ROOT of its own (scratch
only) and ARTIFACT_STORAGE=s3. Wall time = the job's `completed_at − created_at`; the two modes alternate
so a drift of the machine's load hits both. `storage_full_video_s3_vs_local_ratio` = median s3 / median local.

Downloads: one object of DOWNLOAD_MB stored under a job's key and listed in its result (as a completed job's
files are), fetched by its owner with a token from a production web process (`python -m patches.daphne` with
common.WEB_ENV, ARTIFACT_STORAGE=s3) following the 302, and fetched
from a presigned URL made here (the store alone). `artifact_download_mb_s` is the first;
`artifact_download_vs_direct_ratio` = first / second (best of a few fetches each).
"""
from __future__ import annotations

import os
import shutil
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

from jobs import queues

from . import common

POOLS = {"video": f"{queues.VIDEO},{queues.MAINTENANCE}", "images": queues.IMAGE, "audio": queues.AUDIO}
SENTENCES = ("The harbour wakes slowly under a pale sky.", "Boats return with the tide, gulls circling above.",
             "In the market, traders call out the prices of the morning catch.")


def _direct_env(s3: Any) -> dict[str, str]:
    """The bucket's settings with moto's own port: the tests' stoppable proxy in front (tests/s3store.py)
    would add a relay through this process's threads to every request."""
    return s3.env(AWS_S3_ENDPOINT_URL=s3.direct)


def _script(scenes: int) -> str:
    return "\n\n".join(f"## Scene {n}\n{' '.join(SENTENCES)}" for n in range(1, scenes + 1))


def _start_pools(group: Any, name: str, env: dict[str, str], roots: Path | None) -> list[str]:
    names = []
    for pool, pool_queues in POOLS.items():
        extra = dict(env)
        if roots is not None:  # a machine of its own: an empty MEDIA_ROOT
            (roots / pool).mkdir(parents=True, exist_ok=True)
            extra["MEDIA_ROOT"] = str(roots / pool)
        names.append(f"{name}-{pool}")
        group.start_worker(names[-1], queues=pool_queues, concurrency=1, wait=False, **extra)
    group.wait_ready(*names)
    return names


def _run_job(project: Any, params: dict[str, Any], timeout: float = 600) -> float:
    from jobs import services
    from jobs.models import GenerationJob

    job = services.job_create(project=project, job_type="full_video", params=params)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = GenerationJob.objects.get(pk=job.pk)
        if done.status in ("completed", "failed", "cancelled"):
            if done.status != "completed":
                raise RuntimeError(f"bench job {job.pk} {done.status}: {done.error_message}")
            return (done.completed_at - done.created_at).total_seconds()
        time.sleep(0.05)
    raise RuntimeError(f"bench job {job.pk} did not finish within {timeout} s")


def full_video(group: Any, s3: Any, quick: bool) -> dict[str, Any]:
    user, _ = common.make_user_with_token()
    project = common.make_project(user)
    project.script = _script(3 if quick else 6)
    project.save()
    params = {"width": 320, "height": 180, "fps": 10} if quick else {"width": 640, "height": 360, "fps": 24}
    # Each round starts a pair of workers per mode. A quick run is one round, counted (smaller by design: the
    # 5-minute budget); the full run counts three after a warm-up round.
    rounds, warmups = (1, 0) if quick else (3, 1)
    envs = {"local": ({}, None), "s3": (_direct_env(s3), scratch_roots())}
    times: dict[str, list[float]] = {"local": [], "s3": []}
    # The modes take turns, each with freshly started workers (a stopped worker's pending BRPOP would still
    # take messages, so both sets cannot stay up); a warm-up round is not counted.
    for n in range(rounds + warmups):
        for mode in ("local", "s3") if n % 2 == 0 else ("s3", "local"):
            names = _start_pools(group, f"{mode}{n}", *envs[mode])
            try:
                seconds = _run_job(project, params, timeout=300)
            finally:
                for name in names:
                    group.stop(name)
            if n >= warmups:
                times[mode].append(seconds)
    local, remote = statistics.median(times["local"]), statistics.median(times["s3"])
    return {"storage_full_video_local_s": round(local, 2), "storage_full_video_s3_s": round(remote, 2),
            "storage_full_video_s3_vs_local_ratio": round(remote / local, 3),
            "storage_full_video_params": {**params, "scenes": 3 if quick else 6, "rounds": rounds}}


def _fetch(url: str, headers: dict[str, str] | None = None) -> tuple[float, int]:
    started = time.perf_counter()
    size = 0
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=120) as answer:
        while chunk := answer.read(1 << 20):
            size += len(chunk)
    return time.perf_counter() - started, size


def downloads(group: Any, s3: Any, quick: bool) -> dict[str, Any]:
    from jobs import services
    from jobs.locations import key_url
    from jobs.models import GenerationJob
    from jobs.store.s3 import S3Store

    megabytes = 16 if quick else 64
    user, token = common.make_user_with_token()
    job = services.job_create(project=common.make_project(user), job_type="image_generation")
    key = f"jobs/{job.pk}/a1/big.bin"
    # Listed in the result as a completed job's files are: the download then needs no lookup in the store.
    listed = {"kind": "video", "url": key_url(job.pk, key), "bytes": megabytes << 20,
              "content_type": "application/octet-stream", "name": "big.bin"}
    GenerationJob.objects.filter(pk=job.pk).update(status="completed", result={"artifacts": [listed]})
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=os.urandom(megabytes << 20),
                           ContentType="application/octet-stream")
    port = group.start_daphne("storage-web", **{**common.WEB_ENV, **_direct_env(s3)})  # served as in production
    from storages.backends.s3 import S3Storage

    store = S3Store(S3Storage(**s3.storage(AWS_S3_ENDPOINT_URL=s3.direct)["OPTIONS"]))
    via_api, direct = [], []
    for _ in range(2 if quick else 4):
        seconds, size = _fetch(f"http://127.0.0.1:{port}/api/jobs/{job.pk}/artifacts/a1/big.bin",
                               {"Authorization": f"Token {token}"})
        assert size == megabytes << 20, size
        via_api.append(megabytes / seconds)
        url = store.presigned_url(key, ttl_s=300, content_type="application/octet-stream", filename="big.bin")
        seconds, size = _fetch(url)
        direct.append(megabytes / seconds)
    best_api, best_direct = max(via_api), max(direct)
    return {"artifact_download_mb_s": round(best_api, 1), "artifact_download_direct_mb_s": round(best_direct, 1),
            "artifact_download_vs_direct_ratio": round(best_api / best_direct, 3),
            "artifact_download_mb": megabytes}


def scratch_roots() -> Path:
    """The s3 mode's per-pool MEDIA_ROOTs (scratch only), removed when the scenario ends."""
    return common.VAR / f"storage-{os.getpid()}"


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    from tests.s3store import moto_s3

    group = common.process_group()
    try:
        with moto_s3() as s3:
            results = full_video(group, s3, quick)
            results.update(downloads(group, s3, quick))
    finally:
        group.stop_all()
        shutil.rmtree(scratch_roots(), ignore_errors=True)
    return results
