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

import random
import time
from typing import Any

from . import common, floor

JOBS, WATCHERS, RATE = 100, 10, 100.0
POLL_INTERVAL_S = 0.5
CLIENT_PROCS = 3
FLOOR_ADJACENT_SAMPLES = 200  # before and again after the push (bench/floor.py), ~0.2 s each when quiet


def report_updates(job_ids: list[str], duration: float, rate: float) -> dict[str, Any]:
    """Report progress round-robin over the jobs at `rate`/s for `duration` s; the seqs recorded per job."""
    from django.db import connection

    from jobs import services

    recorded: dict[str, int] = {job_id: 0 for job_id in job_ids}
    committed: dict[tuple[str, int], float] = {}  # (job, seq) -> when the service call returned (committed)
    call_ms: list[float] = []
    # A reporting pool process holds its connection already: no report times the connection's opening.
    connection.ensure_connection()
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


def _merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"recorded": {k: v for part in parts for k, v in part["recorded"].items()},
            "committed": {k: v for part in parts for k, v in part["committed"].items()},
            "call_ms": [x for part in parts for x in part["call_ms"]], "sent": sum(p["sent"] for p in parts),
            "seconds": max(p["seconds"] for p in parts)}


def _report_in_threads(job_ids: list[str], duration: float, rate: float, threads: int) -> dict[str, Any]:
    """report_updates split over `threads` threads (each its own database connection and jobs), merged.

    One reporter waits for each commit before the next report, so it offers at most 1 / (commit time)
    reports a second: 133/s on this machine at load 6 (7.5 ms a report, 1.6 ms of it CPU). Running jobs
    report from many pool processes at once; threads model that, since a report waits mostly on I/O.
    """
    from concurrent.futures import ThreadPoolExecutor

    if threads <= 1:
        return report_updates(job_ids, duration, rate)
    shares = common.split(job_ids, threads)
    with ThreadPoolExecutor(len(shares)) as pool:
        parts = list(pool.map(lambda share: _report_at_random_phase(share, duration, rate * len(share) / len(job_ids)),
                              shares))
    return _merged(parts)


def _report_at_random_phase(job_ids: list[str], duration: float, rate: float) -> dict[str, Any]:
    """report_updates, first waiting a random part of its interval: reporters started together would otherwise
    report in step (32 at once every 32 ms at 1,000/s), a burst whose last report waits for the other 31,
    where jobs in many pool processes report at independent moments."""
    time.sleep(random.uniform(0.0, 1.0 / rate))
    return report_updates(job_ids, duration, rate)


def _report_in_child(job_ids: list[str], duration: float, rate: float, layer: str | None,
                     threads: int = 1) -> dict[str, Any]:
    """report_updates in a forked reporter process (a worker of its own), its pushes flushed before it returns."""
    from django.conf import settings

    from realtime import publish

    # A fresh layer instance: the one inherited from the parent may hold the parent's Redis connections.
    use_layer(layer or settings.CHANNEL_LAYERS["default"]["BACKEND"])
    out = _report_in_threads(job_ids, duration, rate, threads)
    publish.flush(10)
    return out


def report_in_processes(job_ids: list[str], duration: float, rate: float, processes: int,
                        layer: str | None = None, threads: int = 1) -> dict[str, Any]:
    """report_updates split over `processes` forked processes (as several workers report), each reporting
    from `threads` threads, results merged.

    `layer` (a channel-layer class path) replaces the production layer in the reporters, for a baseline
    whose web processes speak another layer's protocol.
    """
    import multiprocessing

    from django.db import connections

    if processes <= 1 and threads <= 1 and not layer:
        return report_updates(job_ids, duration, rate)
    connections.close_all()  # a forked child must open its own connection, never share the parent's
    shares = common.split(job_ids, processes)
    with multiprocessing.get_context("fork").Pool(len(shares)) as pool:
        parts = pool.starmap(_report_in_child, [(share, duration, rate * len(share) / len(job_ids), layer, threads)
                                                for share in shares])
        # Let the children exit on their own: `with`'s terminate() alone once hung joining a child still
        # blocked on the pool's task-queue lock, which terminate() takes and keeps.
        pool.close()
        pool.join()
    return _merged(parts)


def use_layer(backend: str) -> None:
    """Point this process's channel layer (what realtime.publish sends with) at another layer class."""
    from channels.layers import channel_layers
    from django.conf import settings
    from django.utils.module_loading import import_string

    channel_layers.set("default", import_string(backend)(**dict(settings.CHANNEL_LAYERS["default"]["CONFIG"])))


def running_jobs(project: Any, count: int, *, bulk: bool = False) -> tuple[list[str], dict[str, int]]:
    """`count` processing jobs without pipeline tasks behind them, and each one's seq before the run.

    `bulk` writes the rows at once, already `processing` with no events (as bench/ws_fanout.py does):
    for a thousand jobs, going through create and start would take longer than the measurement.
    """
    from django.utils import timezone

    from jobs import services
    from jobs.models import GenerationJob
    from realtime import publish

    if bulk:
        now = timezone.now()
        jobs = GenerationJob.objects.bulk_create(
            [GenerationJob(project=project, job_type="image_generation", status="processing", started_at=now,
                           worker="bench") for _ in range(count)])
        return [str(job.pk) for job in jobs], {str(job.pk): 0 for job in jobs}
    with common.dispatching(None):
        job_ids = [str(services.job_create(project=project, job_type="image_generation").pk) for _ in range(count)]
        for job_id in job_ids:
            services.job_start(job_id=job_id, worker="bench")
    publish.flush(30)
    start_seq = dict(GenerationJob.objects.filter(pk__in=job_ids).values_list("pk", "seq"))
    return job_ids, {str(k): v for k, v in start_seq.items()}


def watched_updates(bases: list[str], token: str, job_ids: list[str], start_seq: dict[str, int], *,
                    watchers: int, rate: float, duration: float, client_procs: int, reporters: int = 1,
                    layer: str | None = None, reporter_threads: int = 1) -> dict[str, Any]:
    """`watchers` websockets per job over `bases`, `rate` progress reports/s for `duration` s: the figures.

    Latency = receive time - the `t=<epoch>` taken just before the service call; lost = recorded seqs a
    socket never received (a socket that never opened loses all of its job's).
    """
    clients = common.Clients()
    out: dict[str, Any] = {}
    try:
        assignments = [job_id for job_id in job_ids for _ in range(watchers)]
        listen_s = duration + 3.0
        clients.start("watch", [{"bases": bases, "token": token, "jobs": share, "listen_s": listen_s}
                                for share in common.split(assignments, client_procs)])
        connect_started = time.monotonic()
        statuses = clients.wait_ready(300)
        out["connect_s"] = round(time.monotonic() - connect_started, 1)
        time.sleep(1.0)  # pub/sub subscriptions of the last joins settle
        clients.go()
        report = report_in_processes(job_ids, duration, rate, reporters, layer, reporter_threads)
        results = clients.results(listen_s + 120)
    finally:
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
    lost += sum(watchers * report["recorded"][j] for j in job_ids) - sum(
        report["recorded"][job_id] for r in results for job_id, _ in r["sockets"])  # sockets that never opened
    out.update(
        p50_ms=round(common.percentile(latencies, 0.50) * 1000, 2),
        p99_ms=round(common.percentile(latencies, 0.99) * 1000, 2),
        lost=lost,
        expected_deliveries=sum(watchers * n for n in report["recorded"].values()),
        updates_recorded=sum(report["recorded"].values()),
        updates_per_s=round(report["sent"] / report["seconds"], 1),
        # The split of p50_ms: the service call (row lock, event row, commit) and what follows it.
        report_call_p50_ms=round(common.percentile(report["call_ms"], 0.5), 2),
        report_call_p99_ms=round(common.percentile(report["call_ms"], 0.99), 2),
        after_commit_p50_ms=round(common.percentile(from_commit, 0.50) * 1000, 2),
        after_commit_p99_ms=round(common.percentile(from_commit, 0.99) * 1000, 2),
        handshake_errors=sum(s["errors"] for s in statuses),
        # A websocket handshake is one HTTP request; after it, nothing but frames.
        handshakes=sum(r["handshakes"] for r in results),
    )
    return out


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    # Push costs one HTTP request per client per session, polling two a second, so the request ratio is a
    # property of the watching time (100x takes 50 s of watching when the polls get through); the full run
    # watches for 75 s (about 150x; it watched 120 s, which the full run's 30 minutes cannot spare twice).
    duration = 4.0 if quick else 75.0
    user, token = common.make_user_with_token()
    project = common.make_project(user)
    job_ids, start_seq = running_jobs(project, JOBS)

    group = common.process_group()
    clients = common.Clients()
    out: dict[str, Any] = {}
    try:
        port = group.start_daphne("push-daphne", DATABASE_POOL="1", **common.WS_ENV)
        # --- push ---
        # The floor again, just before and just after the push, with the push's servers up and idle: on a
        # shared machine the load moves between the run's first scenario (floor_ms) and this one (floor_ms
        # 0.59 ms at load 0.7, then push p50 7.6 ms at load 5-7 in one quick run), and the ratio measured
        # that. Reported beside push_vs_floor_ratio, which stays as the issue defines it.
        adjacent = floor._samples(FLOOR_ADJACENT_SAMPLES)["total"]
        push = watched_updates([f"ws://127.0.0.1:{port}"], token, job_ids, start_seq, watchers=WATCHERS,
                               rate=RATE, duration=duration, client_procs=CLIENT_PROCS)
        adjacent += floor._samples(FLOOR_ADJACENT_SAMPLES)["total"]
        out["push_floor_adjacent_ms"] = round(common.percentile(adjacent, 0.50), 3)
        out["push_vs_adjacent_floor_ratio"] = round(push["p50_ms"] / out["push_floor_adjacent_ms"], 2)
        out["push_connect_s"] = push.pop("connect_s")
        out["push_handshake_errors"] = push.pop("handshake_errors")
        out["http_requests_push"] = push.pop("handshakes")
        out.update({f"push_{key}": value for key, value in push.items()})

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
