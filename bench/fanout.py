"""Adapter for bench/ws_fanout.py (the realtime benchmark, run as a subprocess; its file is not ours).

Runs its `one-job` scenario (1 job x 1,000 watchers, 10 updates/s; one web process per core, as README
tells production) with the production setup (patches.channels_redis_pubsub.ResyncingPubSubChannelLayer, our consumers,
`python -m patches.daphne`) and the baseline (channels-redis's RedisChannelLayer, a plain consumer, stock
daphne, same number of processes), and
in the full run also its `many-jobs` scenario; maps its JSON lines onto the issue's keys.
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from . import common


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    scenarios = "one-job" if quick else "one-job,many-jobs"
    duration, grace = ("3", "3") if quick else ("10", "10")
    command = [sys.executable, str(common.ROOT / "bench" / "ws_fanout.py"), "--layers", "core,pubsub",
               "--scenarios", scenarios, "--duration", duration, "--grace", grace]
    for attempt in (1, 2):  # its 1,000 handshakes on SQLite occasionally fail (1011); once more, then give up
        proc = subprocess.run(command, cwd=common.ROOT, capture_output=True, text=True, timeout=900, env=_env())
        rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode == 0 and rows:
            break
        if attempt == 2:
            raise RuntimeError(f"ws_fanout.py exited {proc.returncode}: {proc.stderr[-2000:]}")
    by = {(r["scenario"], r["layer"]): r for r in rows}
    out: dict[str, Any] = {"fanout_runs": rows, "fanout_attempts": attempt}
    if ("one-job", "pubsub") in by:
        out.update(fanout_p50_ms=by["one-job", "pubsub"]["p50_ms"], fanout_p99_ms=by["one-job", "pubsub"]["p99_ms"],
                   fanout_lost=by["one-job", "pubsub"]["lost"])
    if ("one-job", "core") in by:
        core = by["one-job", "core"]
        out.update(fanout_baseline_p50_ms=core["p50_ms"], fanout_baseline_p99_ms=core["p99_ms"],
                   fanout_baseline_lost=core["lost"])
    return out


def _env() -> dict[str, str]:
    import os

    # ws_fanout.py sets up its own SQLite database and key prefix; it only needs Redis and quiet logs.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_KEY_PREFIX", "DATABASE_POOL")}
    return env
