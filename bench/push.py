"""Push vs poll: 1,000 websocket clients watching 100 running jobs (10 each), 100 progress updates/s in all.

This process plays the worker: it reports progress through the production path
(`jobs.services.job_report_progress` -> on_commit -> realtime.publish, whose background sender thread is
the one Celery workers use). Each update's `current_stage` is `t=<epoch>` taken just before the service
call, so latency = client receive time - the moment the worker reported. One daphne serves everything.

Baseline: the same updates watched by clients polling GET /api/jobs/<id>/ every 500 ms (celery-progress's
default interval) on keep-alive connections. One poller per job is measured (100 pollers, 200 req/s);
`http_requests_poll` scales its count to the same 1,000 clients (x10) and says so.
"""
from __future__ import annotations

import time
from typing import Any

from . import common

JOBS, WATCHERS, RATE = 100, 10, 100.0
POLL_INTERVAL_S = 0.5
CLIENT_PROCS = 3


def report_updates(job_ids: list[str], duration: float, rate: float) -> dict[str, Any]:
    """Report progress round-robin over the jobs at `rate`/s for `duration` s; the seqs recorded per job."""
    from django.db import connection

    from jobs import services

    recorded: dict[str, int] = {job_id: 0 for job_id in job_ids}
    committed: dict[tuple[str, int], float] = {}  # (job, seq) -> when the service call returned (committed)
    call_ms: list[float] = []
    started, sent = time.monotonic(), 0
    while time.monotonic() - started < duration:
        job_id = job_ids[sent % len(job_ids)]
        stamp = time.time()
        if services.job_report_progress(job_id=job_id, progress=min(99.0, 0.1 * (recorded[job_id] + 1)),
                                        stage=f"t={stamp:.6f}"):
            recorded[job_id] += 1
            committed[job_id, recorded[job_id]] = time.time()
        call_ms.append((time.time() - stamp) * 1000)
        sent += 1
        time.sleep(max(0.0, started + sent / rate - time.monotonic()))
    connection.close()
    return {"recorded": recorded, "committed": committed, "call_ms": call_ms, "sent": sent, "seconds": time.monotonic() - started}


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    from jobs import services
    from jobs.models import GenerationJob
    from realtime import publish

    # Push costs one HTTP request per client per session, polling two a second, so the request ratio is a
    # property of the watching time (100x takes 50 s of watching when the polls get through); the full run
    # watches for 120 s and says so in BENCHMARKS.md.
    duration = 10.0 if quick else 120.0
    user, token = common.make_user_with_token()
    project = common.make_project(user)
    with common.dispatching(None):  # processing jobs without real pipeline tasks behind them
        job_ids = [str(services.job_create(project=project, job_type="image_generation").pk) for _ in range(JOBS)]
        for job_id in job_ids:
            services.job_start(job_id=job_id, worker="bench")
    publish.flush(10)
    start_seq = dict(GenerationJob.objects.filter(pk__in=job_ids).values_list("pk", "seq"))
    start_seq = {str(k): v for k, v in start_seq.items()}

    group = common.process_group()
    clients = common.Clients()
    out: dict[str, Any] = {}
    try:
        port = group.start_daphne("push-daphne", DATABASE_POOL="1")
        # --- push ---
        assignments = [job_id for job_id in job_ids for _ in range(WATCHERS)]
        listen_s = duration + 3.0
        clients.start("watch", [{"base": f"ws://127.0.0.1:{port}", "token": token, "jobs": share,
                                 "listen_s": listen_s} for share in common.split(assignments, CLIENT_PROCS)])
        connect_started = time.monotonic()
        statuses = clients.wait_ready(180)
        out["push_connect_s"] = round(time.monotonic() - connect_started, 1)
        time.sleep(1.0)  # pub/sub subscriptions of the last joins settle
        clients.go()
        report = report_updates(job_ids, duration, RATE)
        results = clients.results(listen_s + 60)
        clients.stop()
        latencies = [x for r in results for x in r["latencies"]]
        lost = 0
        from_commit: list[float] = []
        for r in results:
            for job_id, received in r["sockets"]:
                expected = set(range(start_seq[job_id] + 1, start_seq[job_id] + report["recorded"][job_id] + 1))
                lost += len(expected - {seq for seq, _ in received})
                for seq, at in received:
                    done = report["committed"].get((job_id, seq - start_seq[job_id]))
                    if done is not None:
                        from_commit.append(at - done)
        lost += sum(WATCHERS * report["recorded"][j] for j in job_ids) - sum(
            report["recorded"][job_id] for r in results for job_id, _ in r["sockets"])  # sockets that never opened
        delivered_expected = sum(WATCHERS * n for n in report["recorded"].values())
        out.update(
            push_p50_ms=round(common.percentile(latencies, 0.50) * 1000, 2),
            push_p99_ms=round(common.percentile(latencies, 0.99) * 1000, 2),
            push_lost=lost,
            push_expected_deliveries=delivered_expected,
            push_updates_recorded=sum(report["recorded"].values()),
            push_updates_per_s=round(report["sent"] / report["seconds"], 1),
            # The split of push_p50_ms: the service call (row lock, event row, commit) and what follows it.
            push_report_call_p50_ms=round(common.percentile(report["call_ms"], 0.5), 2),
            push_report_call_p99_ms=round(common.percentile(report["call_ms"], 0.99), 2),
            push_after_commit_p50_ms=round(common.percentile(from_commit, 0.50) * 1000, 2),
            push_after_commit_p99_ms=round(common.percentile(from_commit, 0.99) * 1000, 2),
            push_handshake_errors=sum(s["errors"] for s in statuses),
            # A websocket handshake is one HTTP request; after it, nothing but frames.
            http_requests_push=sum(r["handshakes"] for r in results),
        )

        # --- poll ---
        pollers = job_ids  # one per job; the 1,000-client count is scaled from these
        clients.start("poll", [{"host": "127.0.0.1", "port": port, "token": token, "jobs": share,
                                "listen_s": duration, "interval_s": POLL_INTERVAL_S}
                               for share in common.split(pollers, 2)])
        clients.wait_ready(60)
        clients.go()
        report_updates(job_ids, duration, RATE)
        results = clients.results(duration + 60)
        clients.stop()
        latencies = [x for r in results for x in r["latencies"]]
        measured = sum(r["requests"] for r in results)
        out.update(
            poll_latency_p50_ms=round(common.percentile(latencies, 0.50) * 1000, 1),
            poll_latency_p99_ms=round(common.percentile(latencies, 0.99) * 1000, 1),
            poll_requests_measured=measured,
            poll_errors=sum(r["errors"] for r in results),
            http_requests_poll=measured * (JOBS * WATCHERS) // len(pollers),
            push_poll_duration_s=duration,
        )
        out["push_vs_poll_latency_ratio"] = round(out["poll_latency_p50_ms"] / max(out["push_p50_ms"], 1e-3), 1)
        out["http_poll_vs_push_ratio"] = round(out["http_requests_poll"] / max(1, out["http_requests_push"]), 1)
    finally:
        clients.stop()
        group.stop_all()
    return out
