"""Webhooks: commit → receiver latency of `job.completed` deliveries, and deliveries lost across a receiver outage.

Jobs are created here at a steady rate with `webhook_url` = a loopback HTTP receiver in this process (a thread)
and the default events (`completed`). A job worker (`bench.tasks.noop_job_task` through the production
dispatch) completes each; its on-commit listener records the delivery and enqueues it; a webhooks worker
(production settings, concurrency 4 as in the Procfile, `WEBHOOKS_ALLOW_PRIVATE=1` for the loopback URL)
signs and posts it. Latency = the receiver's clock at arrival − the job's `completed_at` from the body (set
in the completing transaction, just before its commit; same machine, same clock).

Outage: the receiver is stopped for OUTAGE_S while jobs keep completing, then started again on the same
port; deliveries retry on the production schedule (10 s, then 40 s, ±20 %). `webhook_lost` = completed jobs
whose delivery had not arrived when every delivery was finished or the wait ran out.

Both with the production worker settings (the headline keys), then the latency again without pool-child
recycling (keys ending `_no_recycle`).
"""
from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from jobs import queues
from tests.e2e.webhook_receiver import WebhookReceiver

from . import common

JOB_QUEUES = ",".join(name for name in queues.ALL if name != queues.WEBHOOKS)
HOOKS_ENV = {"WEBHOOKS_ALLOW_PRIVATE": "1"}
# The Procfile's default `--max-tasks-per-child` of the webhooks worker.
SENDER_MAX_TASKS_PER_CHILD = "1000"


def arrivals(receiver: WebhookReceiver) -> list[tuple[str, str, float, float]]:
    """(job id, webhook-id, arrival time, completed_at) of each delivery the receiver got so far."""
    rows = []
    for delivery in receiver.snapshot():
        data = json.loads(delivery.body)["data"]
        completed = dt.datetime.fromisoformat(data["completed_at"]).timestamp()
        rows.append((data["id"], delivery.headers.get("webhook-id", ""), delivery.at, completed))
    return rows


def create_paced(project: Any, url: str, count: int, rate: float) -> list[str]:
    """Create `count` jobs with a webhook at `rate` per second; their ids."""
    from jobs import services

    ids: list[str] = []
    started = time.monotonic()
    for n in range(count):
        ids.append(str(services.job_create(project=project, job_type="image_generation", webhook_url=url).pk))
        time.sleep(max(0.0, started + (n + 1) / rate - time.monotonic()))
    return ids


def _settled(job_ids: list[str]) -> bool:
    """Every job completed and every one of their deliveries finished (delivered or given up)."""
    from jobs.models import GenerationJob
    from webhooks.models import WebhookDelivery

    if GenerationJob.objects.filter(pk__in=job_ids).exclude(status="completed").exists():
        return False
    deliveries = WebhookDelivery.objects.filter(job_id__in=job_ids)
    return deliveries.count() >= len(job_ids) and not deliveries.filter(state=WebhookDelivery.PENDING).exists()


def _wait_settled(job_ids: list[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _settled(job_ids):
            return True
        time.sleep(0.5)
    return False


def latency(project: Any, receiver: WebhookReceiver, count: int, rate: float) -> dict[str, Any]:
    job_ids = create_paced(project, receiver.url, count, rate)
    settled = _wait_settled(job_ids, 120)
    wanted = set(job_ids)
    ms = [(at - completed) * 1000 for job_id, _, at, completed in arrivals(receiver) if job_id in wanted]
    return {"webhook_delivery_p50_ms": round(common.percentile(ms, 0.5), 2),
            "webhook_delivery_p99_ms": round(common.percentile(ms, 0.99), 2),
            "webhook_delivery_max_ms": round(max(ms), 2) if ms else float("nan"),
            "webhook_delivery_jobs": count, "webhook_delivery_received": len(ms),
            "webhook_delivery_rate_per_s": rate, "webhook_delivery_settled": settled}


def outage(project: Any, receiver: WebhookReceiver, outage_s: float, rate: float, wait_s: float) -> dict[str, Any]:
    """Jobs for a few seconds before, during and after `outage_s` without a receiver; then count the missing."""
    from webhooks.models import WebhookDelivery

    margin = min(3.0, outage_s / 2)  # jobs before and after the outage
    job_ids = create_paced(project, receiver.url, round(margin * rate), rate)
    receiver.stop()
    job_ids += create_paced(project, receiver.url, round(outage_s * rate), rate)
    receiver.start()
    job_ids += create_paced(project, receiver.url, round(margin * rate), rate)
    settled = _wait_settled(job_ids, wait_s)
    wanted = set(job_ids)
    received = [row for row in arrivals(receiver) if row[0] in wanted]
    got = {row[0] for row in received}
    deliveries = WebhookDelivery.objects.filter(job_id__in=job_ids)
    return {"webhook_lost": len(wanted - got), "webhook_outage_s": outage_s,
            "webhook_outage_jobs": len(job_ids), "webhook_outage_settled": settled,
            "webhook_outage_retried": deliveries.filter(attempt__gt=1).count(),
            "webhook_outage_given_up": deliveries.filter(state=WebhookDelivery.FAILED).count(),
            "webhook_outage_duplicates": len(received) - len(got)}


def _workers(group: Any, **worker_env: str) -> None:
    group.start_worker("hooks-jobs", queues=JOB_QUEUES, concurrency=2, wait=False,
                       extra_args=["--include", "bench.tasks"], **HOOKS_ENV, **worker_env)
    # As the Procfile runs it: 4 processes, pool children kept for WEBHOOKS_MAX_TASKS_PER_CHILD deliveries.
    sender_env = {"CELERY_WORKER_MAX_TASKS_PER_CHILD": SENDER_MAX_TASKS_PER_CHILD, **worker_env}
    group.start_worker("hooks-sender", queues=queues.WEBHOOKS, concurrency=4, wait=False, **HOOKS_ENV, **sender_env)
    group.wait_ready()


def measure(project: Any, receiver: WebhookReceiver, count: int, rate: float, outage_wait: tuple[float, float] | None,
            **worker_env: str) -> dict[str, Any]:
    """Latency (and, given (outage_s, wait_s), the outage) on a fresh pair of workers."""
    from bench import tasks

    group = common.process_group()
    try:
        _workers(group, **worker_env)
        with common.dispatching(tasks.job_signature_for(tasks.noop_job_task)):
            create_paced(project, receiver.url, 10, 10.0)  # warm-up: pool children forked and connected
            time.sleep(1.0 if count < 100 else 3.0)  # the warm-up's deliveries end
            out = latency(project, receiver, count, rate)
            if outage_wait:
                out.update(outage(project, receiver, outage_wait[0], 5.0, outage_wait[1]))
    finally:
        group.stop_all()
    return out


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    """Production worker settings (the headline figures), then the latency without child recycling."""
    from jobs.models import UserJobLimit

    # A quick run is smaller by design (60 deliveries still give a p99). The full run's 500 (it had 1,000)
    # take 25 s to create at 20/s, twice: 1,000 cost 50 s more of the full run's 30 minutes for the same p99.
    count, rate = (60, 30.0) if quick else (500, 20.0)
    # The production retry schedule: the first retry 8-12 s after a failure, the second 32-48 s later.
    outage_wait = (3.0, 60.0) if quick else (30.0, 150.0)
    user, _ = common.make_user_with_token()
    # One user creates every job: its running limit (admission, default 2) would pace the jobs and the run
    # would wait on that, not on the deliveries measured; the workers' slots still bound it (as throughput).
    UserJobLimit.objects.create(user=user, max_running=0)
    project = common.make_project(user)
    receiver = WebhookReceiver()
    receiver.start()
    try:
        out = measure(project, receiver, count, rate, outage_wait)
        if quick:
            return out  # smaller by design: the `_no_recycle` repeat (its own workers, its own jobs) is left out
        # CELERY_WORKER_MAX_TASKS_PER_CHILD (default 10) forks a new pool child every 10 deliveries; the same
        # latency without recycling shows what that costs (as bench/throughput.py's `_no_recycle` keys).
        plain = measure(project, receiver, count, rate, None, CELERY_WORKER_MAX_TASKS_PER_CHILD="1000000")
        out.update({f"{key}_no_recycle": value for key, value in plain.items()
                    if key in ("webhook_delivery_p50_ms", "webhook_delivery_p99_ms", "webhook_delivery_max_ms",
                               "webhook_delivery_received")})
    finally:
        receiver.stop()
    return out
