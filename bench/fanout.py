"""Adapter for bench/ws_fanout.py (the realtime benchmark, run as a subprocess; its file is not ours).

Runs its `one-job` scenario (1 job x 1,000 watchers, 10 updates/s; one web process per core, as README
tells production) with the production setup (patches.channels_redis_pubsub.ResyncingPubSubChannelLayer, our consumers,
`python -m patches.daphne`) and the baseline (channels-redis's RedisChannelLayer, a plain consumer, stock
daphne, same number of processes), and
in the full run also its `many-jobs` scenario; then its `ten-k` scenario (1 job x 10,000 watchers, 2 updates/s)
for the `fanout10k_*` keys; maps its JSON lines onto the issue's keys. A quick run is smaller by design: `one-job`
and `ten-k` in one invocation, 500 watchers each.
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from . import common


QUICK_WATCHERS = 500
FAILURES: list[str] = []  # why an attempt failed (the end of its stderr), kept in results.json


def fanout_runs(*args: str) -> tuple[list[dict[str, Any]], int]:
    """bench/ws_fanout.py's JSON rows for `args`, and how many attempts it took."""
    command = [sys.executable, str(common.ROOT / "bench" / "ws_fanout.py"), "--layers", "core,pubsub", *args]
    for attempt in (1, 2):  # a handshake failing (1011) fails the run: once more, then give up
        returncode, stdout, stderr = _run(command)
        rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        if returncode == 0 and rows:
            return rows, attempt
        FAILURES.append(f"{' '.join(args)}: exit {returncode}: {stderr[-1500:]}")
    raise RuntimeError(f"ws_fanout.py exited {returncode}: {stderr[-2000:]}")


def _run(command: list[str], timeout: float = 1200) -> tuple[int, str, str]:
    """subprocess.run, but a timeout or a signal (bench/run.py's Stopped) stops ws_fanout.py's daphnes and
    clients too: subprocess.run would SIGKILL ws_fanout.py alone and leave its daphnes (sessions of their
    own) running."""
    proc = subprocess.Popen(command, cwd=common.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        common.stop_descendants(proc.pid, include_self=True)
        proc.communicate()
        raise
    return proc.returncode, stdout, stderr


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    if quick:  # smaller by design: both scenarios in one invocation, 500 watchers each (the 5-minute budget)
        rows, attempt = fanout_runs("--scenarios", "one-job,ten-k", "--watchers", str(QUICK_WATCHERS),
                                    "--client-procs", "4", "--duration", "2", "--grace", "1")
    else:
        rows, attempt = fanout_runs("--scenarios", "one-job,many-jobs", "--duration", "10", "--grace", "10")
    by = {(r["scenario"], r["layer"]): r for r in rows}
    out: dict[str, Any] = {"fanout_runs": rows, "fanout_attempts": attempt}
    if ("one-job", "pubsub") in by:
        out.update(fanout_p50_ms=by["one-job", "pubsub"]["p50_ms"], fanout_p99_ms=by["one-job", "pubsub"]["p99_ms"],
                   fanout_lost=by["one-job", "pubsub"]["lost"])
    if ("one-job", "core") in by:
        core = by["one-job", "core"]
        out.update(fanout_baseline_p50_ms=core["p50_ms"], fanout_baseline_p99_ms=core["p99_ms"],
                   fanout_baseline_lost=core["lost"])
    if quick:
        out.update(fanout10k_figures([r for r in rows if r["scenario"] == "ten-k"], attempt, QUICK_WATCHERS))
    else:
        out.update(fanout10k())
    out["fanout_failed_attempts"] = list(FAILURES)
    return out


def fanout10k() -> dict[str, Any]:
    """1 job x 10,000 watchers at 2 updates/s (a quick run has 500, with its one-job scenario)."""
    rows, attempt = fanout_runs("--scenarios", "ten-k", "--watchers", "10000", "--client-procs", "4",
                                "--duration", "20", "--grace", "10")
    return fanout10k_figures(rows, attempt, 10_000)


def fanout10k_figures(rows: list[dict[str, Any]], attempt: int, watchers: int) -> dict[str, Any]:
    out: dict[str, Any] = {"fanout10k_runs": rows, "fanout10k_attempts": attempt, "fanout10k_watchers": watchers}
    for row in rows:
        prefix = "fanout10k" if row["layer"] == "pubsub" else "fanout10k_baseline"
        out.update({f"{prefix}_p50_ms": row["p50_ms"], f"{prefix}_p99_ms": row["p99_ms"], f"{prefix}_lost": row["lost"],
                    f"{prefix}_connect_s": row["connect_s"], f"{prefix}_connect_errors": row["connect_errors"]})
    return out


def _env() -> dict[str, str]:
    import os

    # ws_fanout.py sets up its own key prefix; it needs Redis, the database and quiet logs.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_KEY_PREFIX", "DATABASE_POOL")}
    # The run's PostgreSQL database rather than ws_fanout.py's SQLite file: 10,000 handshakes at once.
    env["WS_FANOUT_DATABASE_URL"] = os.environ["DATABASE_URL"]
    env.update(common.WEB_ENV)  # both layers' web processes served as README tells production (pool on)
    return env
