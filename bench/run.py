"""`make bench`: run every benchmark with its same-run baseline, write var/bench/results.json, print a table.

    .venv/bin/python -m bench.run                    # the full run (~15 min on 2 cores)
    BENCH_QUICK=1 .venv/bin/python -m bench.run      # smaller version, under 3 minutes
    BENCH_ONLY=api,push .venv/bin/python -m bench.run

Uses PostgreSQL at DATABASE_URL (default postgres://root@127.0.0.1:5432/test: a `vg_bench_<id>` database
is created there and dropped afterwards) and Redis at REDIS_URL with a `bench-<id>` key prefix. Figures are
never asserted anywhere; targets are printed next to them (docs/BENCHMARKS.md).
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import common

# BENCH_RESULTS writes elsewhere (e.g. a profiled run that must not replace the figures).
RESULTS = Path(os.environ.get("BENCH_RESULTS") or common.VAR / "results.json").resolve()
SCENARIOS = ("api", "throughput", "push", "fanout", "ws_idle", "sse", "webhooks")


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
    Row("fanout_p99_ms", "fanout_baseline_p99_ms", None, "≤ 50 ms", _le("fanout_p99_ms", 50)),
    Row("fanout_lost", "fanout_baseline_lost", None, "0", _le("fanout_lost", 0)),
    Row("http_requests_push", "http_requests_poll", "http_poll_vs_push_ratio", "≥ 100× fewer",
        _ge("http_poll_vs_push_ratio", 100), scale_dependent=True),
    Row("jobs_per_s", "celery_raw_per_s", "jobs_vs_raw_ratio", "ratio ≥ 0.5", _ge("jobs_vs_raw_ratio", 0.5)),
    Row("jobs_per_s", "celery_dbresults_per_s", None, "—", lambda r: None),
    Row("api_get_job_rps", "api_bare_rps", "api_vs_bare_ratio", "ratio ≥ 3", _ge("api_vs_bare_ratio", 3)),
    Row("ws_idle_connections", "ws_baseline_connections", None, "≥ 19,000", _ge("ws_idle_connections", 19000),
        scale_dependent=True),
    Row("ws_kb_per_connection", "ws_baseline_kb_per_connection", None, "≤ 40 KB",
        _le("ws_kb_per_connection", 40)),
    Row("ws_handshake_errors", "ws_baseline_handshake_errors", None, "0", _le("ws_handshake_errors", 0)),
    Row("events_per_s_under_flood", None, None, "≤ 10", _le("events_per_s_under_flood", 10)),
    Row("sse_push_p50_ms", "ws_push_p50_ms", "sse_vs_ws_push_ratio", "ratio ≤ 1.5", _le("sse_vs_ws_push_ratio", 1.5)),
    Row("sse_idle_kb_per_stream", None, None, "≤ 64 KB", _le("sse_idle_kb_per_stream", 64)),
    Row("webhook_delivery_p50_ms", None, None, "—", lambda r: None),
    Row("webhook_delivery_p99_ms", None, None, "≤ 100 ms", _le("webhook_delivery_p99_ms", 100)),
    Row("webhook_lost", None, None, "0", _le("webhook_lost", 0)),
]


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return {"nproc": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1), "cpu": cpu,
            "python": platform.python_version(), "loadavg_at_start": os.getloadavg()}


def run_scenarios(env: common.BenchEnv, quick: bool, only: list[str]) -> dict[str, Any]:
    from . import api, fanout, push, sse, throughput, webhooks, ws_idle

    modules = {"api": api, "throughput": throughput, "push": push, "fanout": fanout, "ws_idle": ws_idle,
               "sse": sse, "webhooks": webhooks}
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    timings: dict[str, float] = {}
    for name in only:
        started = time.monotonic()
        print(f"--- {name} ...", flush=True)
        try:
            figures = modules[name].run(env, quick)
            results.update(figures)
            print("    " + ", ".join(f"{k}={v}" for k, v in figures.items()
                                     if not isinstance(v, (dict, list)))[:600], flush=True)
        except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others' figures
            errors[name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        timings[name] = round(time.monotonic() - started, 1)
    results["errors"] = errors
    results["scenario_seconds"] = timings
    return results


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
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        print(f"unknown scenario(s) {sorted(unknown)}; choose from {SCENARIOS}", file=sys.stderr)
        return 2
    common.raise_open_files_limit()
    info = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "quick": quick,
            "command": ("BENCH_QUICK=1 " if quick else "") + "make bench", "machine": machine()}
    print(f"bench: {'QUICK ' if quick else ''}run on {info['machine']['nproc']} cores, "
          f"load average {info['machine']['loadavg_at_start']}", flush=True)
    env = common.BenchEnv()
    started = time.monotonic()
    env.open()
    try:
        results = run_scenarios(env, quick, only)
    finally:
        env.close()
    info["total_seconds"] = round(time.monotonic() - started, 1)
    info["loadavg_at_end"] = os.getloadavg()
    output = {**info, **results}
    common.VAR.mkdir(parents=True, exist_ok=True)
    if set(only) != set(SCENARIOS) and RESULTS.exists():  # a partial run updates the figures it measured
        previous = json.loads(RESULTS.read_text())
        output = {**previous, **output, "errors": {**previous.get("errors", {}), **results["errors"]}}
    RESULTS.write_text(json.dumps(output, indent=2, default=str) + "\n")
    print()
    print(table(output, quick))
    print(f"\n{RESULTS} written; {info['total_seconds']} s in all")
    if results["errors"]:
        print(f"scenarios that failed: {results['errors']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
