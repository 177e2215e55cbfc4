"""`make bench`: run every benchmark with its same-run baseline, write var/bench/results.json, print a table.

    .venv/bin/python -m bench.run                    # the full run (~15 min on 2 cores)
    BENCH_QUICK=1 .venv/bin/python -m bench.run      # smaller version, under 3 minutes
    BENCH_ONLY=api,push .venv/bin/python -m bench.run

Uses PostgreSQL at DATABASE_URL (default postgres://root@127.0.0.1:5432/test: a `vg_bench_<id>` database
is created there and dropped afterwards) and Redis at REDIS_URL with a `bench-<id>` key prefix. Figures are
never asserted anywhere; targets are printed next to them (docs/BENCHMARKS.md).

Each scenario starts from a clean state (BenchEnv.reset: the last one's processes stopped, every table
emptied, the run's Redis keys deleted) and runs under a timeout (TIMEOUT_S); `scenario_seconds` and
`scenario_cpu_seconds` in results.json say how long each took and how much CPU its processes used.
SIGTERM or SIGINT stops every process the run started, drops the database and deletes the keys, and keeps
the figures measured so far.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import common

# BENCH_RESULTS writes elsewhere (e.g. a profiled run that must not replace the figures).
RESULTS = Path(os.environ.get("BENCH_RESULTS") or common.VAR / "results.json").resolve()
# `floor` runs first in every run (a few seconds): each latency is also reported as a ratio to it.
SCENARIOS = ("floor", "api", "throughput", "push", "push10x", "time_to_start", "fanout", "ws_idle", "sse",
             "webhooks", "failover", "fair", "scenes", "storage", "amqp")


@dataclass(frozen=True)
class Row:
    key: str
    baseline: str | None
    ratio: str | None  # a key holding the ratio, or None
    target: str
    met: Callable[[dict[str, Any]], bool | None]
    scale_dependent: bool = False  # a quick run is too small to meet it by design


def _le(key: str, bound: float) -> Callable[[dict[str, Any]], bool | None]:
    return lambda r: None if not _num(r.get(key)) else r[key] <= bound


def _ge(key: str, bound: float) -> Callable[[dict[str, Any]], bool | None]:
    return lambda r: None if not _num(r.get(key)) else r[key] >= bound


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value))


ROWS = [
    Row("push_p50_ms", "poll_latency_p50_ms", "push_vs_poll_latency_ratio", "≤ 2 ms", _le("push_p50_ms", 2)),
    Row("push_p99_ms", None, None, "≤ 10 ms", _le("push_p99_ms", 10)),
    Row("push_lost", None, None, "0", _le("push_lost", 0)),
    Row("push_vs_poll_latency_ratio", None, None, "≥ 100", _ge("push_vs_poll_latency_ratio", 100)),
    Row("push_p50_ms", "floor_ms", "push_vs_floor_ratio", "ratio ≤ 3", _le("push_vs_floor_ratio", 3)),
    Row("fanout_p99_ms", "fanout_baseline_p99_ms", None, "≤ 50 ms", _le("fanout_p99_ms", 50)),
    Row("fanout_lost", "fanout_baseline_lost", None, "0", _le("fanout_lost", 0)),
    Row("http_requests_push", "http_requests_poll", "http_poll_vs_push_ratio", "≥ 100× fewer",
        _ge("http_poll_vs_push_ratio", 100), scale_dependent=True),
    Row("push10x_p50_ms", "push10x_baseline_p50_ms", "push10x_vs_floor_ratio", "— (ratio: to floor_ms)",
        lambda r: None),
    Row("push10x_p99_ms", "push10x_baseline_p99_ms", None, "≤ 20 ms", _le("push10x_p99_ms", 20)),
    Row("push10x_lost", "push10x_baseline_lost", None, "0", _le("push10x_lost", 0)),
    Row("push10x_updates_per_s", "push10x_rate", None, "1,000 (the load asked for)",
        _ge("push10x_updates_per_s", 990), scale_dependent=True),
    Row("fanout10k_p99_ms", "fanout10k_baseline_p99_ms", None, "≤ 200 ms", _le("fanout10k_p99_ms", 200)),
    Row("fanout10k_lost", "fanout10k_baseline_lost", None, "0", _le("fanout10k_lost", 0)),
    Row("fanout10k_watchers", None, None, "10,000", _ge("fanout10k_watchers", 10_000), scale_dependent=True),
    Row("time_to_start_p50_ms", "celery_latency_p50_ms", "time_to_start_vs_floor_ratio", "≤ 25 ms",
        _le("time_to_start_p50_ms", 25)),
    Row("time_to_start_p99_ms", "celery_latency_p99_ms", None, "≤ 100 ms", _le("time_to_start_p99_ms", 100)),
    Row("jobs_per_s", "celery_raw_per_s", "jobs_vs_raw_ratio", "ratio ≥ 0.8 (first round: 0.5)",
        _ge("jobs_vs_raw_ratio", 0.8)),
    Row("jobs_per_s_no_recycle", "celery_raw_per_s_no_recycle", "jobs_vs_raw_ratio_no_recycle", "ratio ≥ 0.3",
        _ge("jobs_vs_raw_ratio_no_recycle", 0.3)),
    Row("jobs_per_s", "celery_dbresults_per_s", None, "—", lambda r: None),
    Row("api_get_job_rps", "api_bare_rps", "api_vs_bare_ratio", "ratio ≥ 3", _ge("api_vs_bare_ratio", 3)),
    Row("ws_idle_connections", "ws_baseline_connections", None, "≥ 19,000", _ge("ws_idle_connections", 19000),
        scale_dependent=True),
    Row("ws_kb_per_connection", "ws_baseline_kb_per_connection", None, "≤ 32 KB (first round: 40)",
        _le("ws_kb_per_connection", 32)),
    Row("ws_handshake_errors", "ws_baseline_handshake_errors", None, "0", _le("ws_handshake_errors", 0)),
    Row("events_per_s_under_flood", None, None, "≤ 10", _le("events_per_s_under_flood", 10)),
    Row("sse_push_p50_ms", "ws_push_p50_ms", "sse_vs_ws_push_ratio", "ratio ≤ 1.5", _le("sse_vs_ws_push_ratio", 1.5)),
    Row("sse_idle_kb_per_stream", None, None, "≤ 64 KB", _le("sse_idle_kb_per_stream", 64)),
    Row("webhook_delivery_p50_ms", None, None, "—", lambda r: None),
    Row("webhook_delivery_p99_ms", None, None, "≤ 100 ms", _le("webhook_delivery_p99_ms", 100)),
    Row("webhook_lost", None, None, "0", _le("webhook_lost", 0)),
    Row("failover_push_gap_s", "failover_steady_gap_s", None, "≤ 10 s", _le("failover_push_gap_s", 10)),
    Row("failover_jobs_not_completed", None, None, "0", _le("failover_jobs_not_completed", 0)),
    Row("failover_clients_without_final", None, None, "0", _le("failover_clients_without_final", 0)),
    # The FIFO wait grows with the flood (20 jobs in a quick run, 100 in the full one), the fair one does not.
    Row("fair_wait_ratio", "fifo_wait_s", None, "≤ 0.05", _le("fair_wait_ratio", 0.05), scale_dependent=True),
    Row("fair_jain_index", None, None, "≥ 0.95", _ge("fair_jain_index", 0.95)),
    Row("fair_throughput_ratio", "fair_plain_jobs_per_s", None, "≥ 0.95", _ge("fair_throughput_ratio", 0.95)),
    Row("admission_p99_ms", None, None, "≤ 20 ms", _le("admission_p99_ms", 20)),
    Row("retry_after_half_cost_ratio", "scenes_full_run_s", None, "≤ 0.6", _le("retry_after_half_cost_ratio", 0.6)),
    Row("scene_parallel_speedup", "scenes_one_worker_s", None, "≥ 1.7", _ge("scene_parallel_speedup", 1.7)),
    Row("scene_parallel_speedup_no_recycle", "scenes_one_worker_s_no_recycle", None, "— (no pool-child recycling)",
        lambda r: None),
    Row("storage_full_video_s3_s", "storage_full_video_local_s", "storage_full_video_s3_vs_local_ratio",
        # a quick run's 3-scene 320x180 video takes ~0.5 s, so the store's fixed round trips weigh more
        "ratio ≤ 1.3", _le("storage_full_video_s3_vs_local_ratio", 1.3), scale_dependent=True),
    Row("artifact_download_mb_s", "artifact_download_direct_mb_s", "artifact_download_vs_direct_ratio",
        # the 302's extra request is a larger share of a quick run's 16 MB than of the full run's 64 MB
        "ratio ≥ 0.9", _ge("artifact_download_vs_direct_ratio", 0.9), scale_dependent=True),
    Row("jobs_per_s_amqp", "jobs_per_s_redis", "amqp_vs_redis_jobs_ratio", "ratio ≥ 0.8",
        _ge("amqp_vs_redis_jobs_ratio", 0.8)),
]


def machine() -> dict[str, Any]:
    """What the figures were measured on: latency in milliseconds holds for one kind of machine only."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return {"hostname": platform.node(), "nproc": os.cpu_count(), "cpu_model": cpu, "cpu": cpu,
            "memory_gb": round(mem_kb / 1024 / 1024, 1), "python": platform.python_version(),
            "open_files_limit": common.raise_open_files_limit(), "loadavg_at_start": os.getloadavg()}


def command() -> str:
    """The command line that reproduces this run."""
    given = [f"{name}={os.environ[name]}" for name in ("BENCH_QUICK", "BENCH_ONLY") if os.environ.get(name)]
    return " ".join([*given, "make bench"])


def commit() -> str | None:
    """The commit measured (`git rev-parse HEAD`), with `-dirty` when the work tree has changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=common.ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=common.ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None  # not a git checkout (an unpacked release): say nothing rather than guess
    return head + ("-dirty" if dirty else "")


# Seconds one scenario may take before it is stopped (its processes killed, its rows and keys deleted) and
# the run goes on: (quick, full), about three times what each took on this 2-core machine at load 11-22
# (quick: scenes 165 s, ws_idle 182 s, throughput 174 s; full: storage 426 s at load 25, ws_idle past 20
# minutes at load 6-13), so that only a hang reaches it. BENCH_SCENARIO_TIMEOUT_S overrides every one.
TIMEOUT_S = {"floor": (60, 120), "api": (300, 300), "throughput": (600, 900), "push": (420, 900),
             "push10x": (300, 900), "time_to_start": (300, 600), "fanout": (420, 1500), "ws_idle": (600, 1500),
             "sse": (180, 600), "webhooks": (450, 900), "failover": (300, 900), "fair": (420, 900),
             "scenes": (480, 900), "storage": (360, 1200), "amqp": (180, 600)}


class Stopped(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT (the whole run) or SIGALRM (one scenario's timeout).

    A BaseException, so that no scenario's `except Exception` swallows it while every `finally` (stop_all,
    settings restored) still runs on its way up.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


MAIN_PID = os.getpid()


def _raise_stopped(signum: int, frame: Any) -> None:
    if os.getpid() != MAIN_PID:  # a forked reporter (bench/push.py) inherits the handler: die as by default
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise Stopped(signum)


def install_signal_handlers() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
        signal.signal(signum, _raise_stopped)


def timeout_s(name: str, quick: bool) -> float:
    given = os.environ.get("BENCH_SCENARIO_TIMEOUT_S")
    return float(given) if given else float(TIMEOUT_S[name][0 if quick else 1])


def run_one(env: common.BenchEnv, module: Any, name: str, quick: bool) -> dict[str, Any]:
    """One scenario under its timeout (SIGALRM), from a clean state: the last one's processes, rows and keys gone."""
    env.reset()
    signal.setitimer(signal.ITIMER_REAL, timeout_s(name, quick))
    try:
        return module.run(env, quick)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of every child it has reaped, which took in theirs.

    A scenario's servers, workers (with their pool children) and clients are reaped when it stops them, so
    the difference over a scenario is the CPU its whole tree used: what its duration would shrink to on a
    quiet machine (about this / cores, or its sleeps and fixed durations if longer), which a shared
    machine's wall-clock seconds do not say.
    """
    import resource

    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def run_scenarios(env: common.BenchEnv, quick: bool, only: list[str], results: dict[str, Any]) -> None:
    """Run `only` in order, their figures, `errors` and `scenario_seconds` into `results` as they come (so
    that a run stopped by a signal still has the figures measured before it)."""
    from . import (amqp_broker, api, failover, fair, fanout, floor, push, push10x, scenes, sse, storage, throughput,
                   time_to_start, webhooks, ws_idle)

    modules = {"floor": floor, "api": api, "throughput": throughput, "push": push, "push10x": push10x,
               "time_to_start": time_to_start, "fanout": fanout, "ws_idle": ws_idle, "sse": sse,
               "webhooks": webhooks, "failover": failover, "fair": fair, "scenes": scenes, "storage": storage,
               "amqp": amqp_broker}
    errors, timings = results.setdefault("errors", {}), results.setdefault("scenario_seconds", {})
    cpu = results.setdefault("scenario_cpu_seconds", {})
    try:
        for name in only:
            started, cpu_before = time.monotonic(), cpu_seconds()
            print(f"--- {name} ...", flush=True)
            try:
                figures = run_one(env, modules[name], name, quick)
                results.update(figures)
                print("    " + ", ".join(f"{k}={v}" for k, v in figures.items()
                                         if not isinstance(v, (dict, list)))[:600], flush=True)
            except Stopped as stopped:
                if stopped.signum != signal.SIGALRM:
                    errors[name] = f"stopped by {stopped} after {time.monotonic() - started:.0f} s"
                    raise
                errors[name] = f"timed out after {timeout_s(name, quick):.0f} s (BENCH_SCENARIO_TIMEOUT_S)"
                print(f"    {errors[name]}", file=sys.stderr, flush=True)
            except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others' figures
                errors[name] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            finally:
                timings[name] = round(time.monotonic() - started, 1)
                cpu[name] = round(cpu_seconds() - cpu_before, 1)
                print(f"    ({name}: {timings[name]} s, {cpu[name]} s of CPU)", flush=True)
    finally:
        results.update(floor_ratios(results))


# Latencies (ms) reported again as multiples of the same run's floor (bench/floor.py): key -> ratio key.
FLOOR_RATIOS = {"push_p50_ms": "push_vs_floor_ratio", "push10x_p50_ms": "push10x_vs_floor_ratio",
                "push10x_p99_ms": "push10x_p99_vs_floor_ratio", "time_to_start_p50_ms": "time_to_start_vs_floor_ratio",
                "fanout10k_p99_ms": "fanout10k_p99_vs_floor_ratio", "sse_push_p50_ms": "sse_push_vs_floor_ratio",
                "webhook_delivery_p50_ms": "webhook_delivery_vs_floor_ratio"}


def floor_ratios(results: dict[str, Any]) -> dict[str, float]:
    """Each latency of this run divided by this run's `floor_ms` (never a floor of another run)."""
    floor_ms = results.get("floor_ms")
    if not _num(floor_ms) or floor_ms <= 0:
        return {}
    return {ratio: round(results[key] / floor_ms, 2) for key, ratio in FLOOR_RATIOS.items() if _num(results.get(key))}


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(results: dict[str, Any], quick: bool) -> str:
    lines = ["| key | value | baseline | ratio | target | met? |", "|---|---|---|---|---|---|"]
    for row in ROWS:
        baseline = f"{fmt(results.get(row.baseline))} ({row.baseline})" if row.baseline else "—"
        ratio = f"{fmt(results.get(row.ratio))}" if row.ratio else "—"
        met = row.met(results)
        verdict = "—" if met is None else ("yes" if met else "**no**")
        if quick and row.scale_dependent and met is False:
            verdict = "no (quick run: smaller by design)"
        lines.append(f"| `{row.key}` | {fmt(results.get(row.key))} | {baseline} | {ratio} | {row.target} | {verdict} |")
    return "\n".join(lines)


def main() -> int:
    quick = common.quick()
    only = [s for s in os.environ.get("BENCH_ONLY", ",".join(SCENARIOS)).split(",") if s]
    if "floor" not in only:
        only.insert(0, "floor")  # the ratios need this run's floor
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        print(f"unknown scenario(s) {sorted(unknown)}; choose from {SCENARIOS}", file=sys.stderr)
        return 2
    info = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "commit": commit(),
            "quick": quick, "command": command(), "machine": machine(),
            "load_avg": os.getloadavg()}
    print(f"bench: {'QUICK ' if quick else ''}run on {info['machine']['nproc']} cores, "
          f"load average {info['machine']['loadavg_at_start']}", flush=True)
    env = common.BenchEnv()
    started = time.monotonic()
    install_signal_handlers()
    stopped: Stopped | None = None
    results: dict[str, Any] = {"errors": {}, "scenario_seconds": {}}
    try:
        env.open()
        run_scenarios(env, quick, only, results)
    except Stopped as exc:  # SIGTERM/SIGINT: stop, clean up, and keep the figures measured so far
        stopped = exc
        results["errors"]["run"] = f"stopped by {exc}"
    finally:
        # A second signal must not cut the clean-up short (the processes, the database and the keys).
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        env.close()
    info["total_seconds"] = round(time.monotonic() - started, 1)
    info["loadavg_at_end"] = os.getloadavg()
    info["load_avg"] = {"start": info["load_avg"], "end": info["loadavg_at_end"]}
    output = {**info, **results}
    common.VAR.mkdir(parents=True, exist_ok=True)
    # A partial run (or one stopped by a signal) updates the figures it measured and keeps the others.
    if (set(only) != set(SCENARIOS) or stopped is not None) and RESULTS.exists():
        previous = json.loads(RESULTS.read_text())
        output = {**previous, **output, "errors": {**previous.get("errors", {}), **results["errors"]}}
    RESULTS.write_text(json.dumps(output, indent=2, default=str) + "\n")
    print()
    print(table(output, quick))
    print(f"\n{RESULTS} written; {info['total_seconds']} s in all")
    if stopped is not None:
        print(f"bench stopped by {stopped}: its processes stopped, {env.database_name} and the "
              f"{env.prefix} keys deleted", file=sys.stderr)
        return 128 + stopped.signum
    if results["errors"]:
        print(f"scenarios that failed: {results['errors']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
