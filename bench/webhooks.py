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
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from jobs import queues

from . import common

JOB_QUEUES = ",".join(name for name in queues.ALL if name != queues.WEBHOOKS)
HOOKS_ENV = {"WEBHOOKS_ALLOW_PRIVATE": "1"}
# The Procfile's default `--max-tasks-per-child` of the webhooks worker.
SENDER_MAX_TASKS_PER_CHILD = "1000"


class Receiver:
    """A loopback HTTP server recording (job id, webhook-id, arrival time, completed_at) of each delivery."""

    def __init__(self) -> None:
        from tests.processes import free_port

        self.port = free_port()
        self.arrivals: list[tuple[str, str, float, float]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                at = time.time()
                data = json.loads(body)["data"]
                completed = dt.datetime.fromisoformat(data["completed_at"]).timestamp()
                with receiver.lock:
                    receiver.arrivals.append((data["id"], self.headers.get("webhook-id", ""), at, completed))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def snapshot(self) -> list[tuple[str, str, float, float]]:
        with self.lock:
            return list(self.arrivals)


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


def latency(project: Any, receiver: Receiver, count: int, rate: float) -> dict[str, Any]:
    job_ids = create_paced(project, receiver.url, count, rate)
    settled = _wait_settled(job_ids, 120)
    wanted = set(job_ids)
    ms = [(at - completed) * 1000 for job_id, _, at, completed in receiver.snapshot() if job_id in wanted]
    return {"webhook_delivery_p50_ms": round(common.percentile(ms, 0.5), 2),
            "webhook_delivery_p99_ms": round(common.percentile(ms, 0.99), 2),
            "webhook_delivery_max_ms": round(max(ms), 2) if ms else float("nan"),
            "webhook_delivery_jobs": count, "webhook_delivery_received": len(ms),
            "webhook_delivery_rate_per_s": rate, "webhook_delivery_settled": settled}


def outage(project: Any, receiver: Receiver, outage_s: float, rate: float, wait_s: float) -> dict[str, Any]:
    """Jobs for a few seconds before, during and after `outage_s` without a receiver; then count the missing."""
    from webhooks.models import WebhookDelivery

    margin = 3.0
    job_ids = create_paced(project, receiver.url, round(margin * rate), rate)
    receiver.stop()
    job_ids += create_paced(project, receiver.url, round(outage_s * rate), rate)
    receiver.start()
    job_ids += create_paced(project, receiver.url, round(margin * rate), rate)
    settled = _wait_settled(job_ids, wait_s)
    wanted = set(job_ids)
    received = [row for row in receiver.snapshot() if row[0] in wanted]
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


def measure(project: Any, receiver: Receiver, count: int, rate: float, outage_wait: tuple[float, float] | None,
            **worker_env: str) -> dict[str, Any]:
    """Latency (and, given (outage_s, wait_s), the outage) on a fresh pair of workers."""
    from bench import tasks

    group = common.process_group()
    try:
        _workers(group, **worker_env)
        with common.dispatching(tasks.job_signature_for(tasks.noop_job_task)):
            create_paced(project, receiver.url, 10, 10.0)  # warm-up: pool children forked and connected
            time.sleep(3.0)
            out = latency(project, receiver, count, rate)
            if outage_wait:
                out.update(outage(project, receiver, outage_wait[0], 5.0, outage_wait[1]))
    finally:
        group.stop_all()
    return out


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    """Production worker settings (the headline figures), then the latency without child recycling."""
    count, rate = (200, 20.0) if quick else (1000, 20.0)
    # The production retry schedule: the first retry 8-12 s after a failure, the second 32-48 s later.
    outage_wait = (6.0, 60.0) if quick else (30.0, 150.0)
    user, _ = common.make_user_with_token()
    project = common.make_project(user)
    receiver = Receiver()
    receiver.start()
    try:
        out = measure(project, receiver, count, rate, outage_wait)
        # CELERY_WORKER_MAX_TASKS_PER_CHILD (default 10) forks a new pool child every 10 deliveries; the same
        # latency without recycling shows what that costs (as bench/throughput.py's `_no_recycle` keys).
        plain = measure(project, receiver, count, rate, None, CELERY_WORKER_MAX_TASKS_PER_CHILD="1000000")
        out.update({f"{key}_no_recycle": value for key, value in plain.items()
                    if key in ("webhook_delivery_p50_ms", "webhook_delivery_p99_ms", "webhook_delivery_max_ms",
                               "webhook_delivery_received")})
    finally:
        receiver.stop()
    return out
