"""Time to start: `POST /api/jobs/` -> the job's `processing` push, one job at a time on an idle worker pool.

Everything is production: a web process (`python -m patches.daphne`, DATABASE_POOL=1) takes the POST with a
token, the job is dispatched on commit with the real plan (image_generation: parse, then images; the
built-in title cards) to a worker with the production settings (2 pool processes, child recycling), whose
first stage's `job_start` is pushed to the project's websocket stream, opened before the first POST.
Each sample waits for its job to finish (and 0.2 s more) before the next POST, so the pool is idle.

Baseline in the same run, on the same worker: a raw Celery task (`bench.tasks.latency_task`) from
`apply_async` to the start of its body (`celery_latency_p50_ms`), one at a time.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import time
from typing import Any

from jobs import queues

from . import common

ALL_QUEUES = ",".join(queues.ALL)
TERMINAL = {"completed", "failed", "cancelled"}


def celery_latencies(count: int) -> list[float]:
    """Seconds from apply_async to task start, one task at a time."""
    from django.conf import settings

    from bench import tasks

    key = f"{settings.REDIS_KEY_PREFIX}:{tasks.LATENCY_KEY}"
    tasks._redis().delete(key)
    for i in range(count):
        tasks.latency_task.apply_async((time.time(),), queue=queues.IMAGE)
        deadline = time.monotonic() + 30
        while tasks._redis().llen(key) < i + 1:
            if time.monotonic() > deadline:
                raise TimeoutError("the latency task did not run within 30 s")
            time.sleep(0.001)
        time.sleep(0.05)  # idle again
    return [float(x) for x in tasks._redis().lrange(key, 0, -1)]


async def job_starts(port: int, token: str, project_id: str, count: int) -> dict[str, Any]:
    """POST `count` jobs one after another; for each, the seconds until its `processing` push arrived."""
    from websockets.asyncio.client import connect

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"project_id": project_id, "job_type": "image_generation"})
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json", "Accept": "application/json"}

    def post() -> tuple[float, int, dict[str, Any]]:
        started = time.time()
        conn.request("POST", "/api/jobs/", body=body, headers=headers)
        response = conn.getresponse()
        return started, response.status, json.loads(response.read() or b"{}")

    starts: list[float] = []
    posts: list[float] = []  # POST sent -> 201 read
    sent: dict[str, float] = {}  # job id -> when its POST was sent (for the split by database timestamps)
    statuses: dict[str, str] = {}
    async with connect(f"ws://127.0.0.1:{port}/ws/projects/{project_id}/?token={token}", ping_interval=None,
                       max_queue=None, compression=None) as ws:
        async def wait_for(job_id: str, wanted: set[str], timeout: float) -> tuple[float, str]:
            deadline = time.monotonic() + timeout
            while statuses.get(job_id) not in wanted:
                raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
                now = time.time()
                message = json.loads(raw)
                if message.get("type") == "status" and message.get("job_id"):
                    statuses[message["job_id"]] = message["status"]
                    if message["job_id"] == job_id and message["status"] in wanted:
                        return now, message["status"]
            return time.time(), statuses[job_id]

        for _ in range(count):
            sent_at, status, job = await asyncio.to_thread(post)
            if status != 201:
                raise RuntimeError(f"POST /api/jobs/ answered {status}: {job}")
            job_id = job["id"]
            posts.append(time.time() - sent_at)
            sent[job_id] = sent_at
            at, _ = await wait_for(job_id, {"processing", *TERMINAL}, 60)
            starts.append(at - sent_at)
            _, final = await wait_for(job_id, TERMINAL, 120)
            if final != "completed":
                raise RuntimeError(f"bench job {job_id} ended {final}")
            await asyncio.sleep(0.2)  # the pool is idle again (the finished task's result stored, child free)
    conn.close()
    return {"starts": starts, "posts": posts, "sent": sent}


def split(measured: dict[str, Any]) -> dict[str, float]:
    """Where the time goes, by the job's own timestamps (same clock): POST sent -> row created (`created_at`,
    the web process's parse, auth and checks), created -> started (`started_at`: commit, dispatch, broker,
    worker claim), started -> push received (the start's commit, publisher, Redis, web process, client)."""
    from jobs.models import GenerationJob

    rows = GenerationJob.objects.filter(pk__in=list(measured["sent"])).values_list("pk", "created_at", "started_at")
    to_created, to_started = [], []
    for pk, created_at, started_at in rows:
        sent_at = measured["sent"][str(pk)]
        to_created.append(created_at.timestamp() - sent_at)
        if started_at:
            to_started.append((started_at - created_at).total_seconds())
    return {
        "time_to_start_post_p50_ms": round(common.percentile(measured["posts"], 0.5) * 1000, 2),
        "time_to_start_to_created_p50_ms": round(common.percentile(to_created, 0.5) * 1000, 2),
        "time_to_start_created_to_started_p50_ms": round(common.percentile(to_started, 0.5) * 1000, 2),
    }


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    count = 20 if quick else 100
    user, token = common.make_user_with_token()
    project = common.make_project(user)
    group = common.process_group()
    try:
        group.start_worker("tts-worker", queues=ALL_QUEUES, concurrency=2, extra_args=["--include", "bench.tasks"])
        # One user posts every job: the creation throttle (60/min) refused a full run's 100 (429); an empty
        # value falls back to the default, so a rate no run reaches.
        port = group.start_daphne("tts-daphne", **common.WEB_ENV, JOBS_CREATE_RATE="100000/min")
        celery_latencies(10)  # warm-up: pool children forked and connected
        raw = celery_latencies(count)
        asyncio.run(job_starts(port, token, str(project.pk), 3))  # warm-up: web process, pool, first imports
        measured = asyncio.run(job_starts(port, token, str(project.pk), count))
    finally:
        group.stop_all()
    starts = measured["starts"]
    return {
        **split(measured),
        "time_to_start_p50_ms": round(common.percentile(starts, 0.50) * 1000, 2),
        "time_to_start_p99_ms": round(common.percentile(starts, 0.99) * 1000, 2),
        "time_to_start_samples": len(starts),
        "celery_latency_p50_ms": round(common.percentile(raw, 0.50) * 1000, 2),
        "celery_latency_p99_ms": round(common.percentile(raw, 0.99) * 1000, 2),
    }
