"""Idle websocket capacity: authenticated connections one daphne process holds, and memory per connection.

The production consumer (config.asgi, the README's channel layer) vs a plain consumer with channels-redis's
default RedisChannelLayer (bench/plain_asgi.py). Clients: CLIENT_PROCS processes of bench.clients `idle`,
each opening its share with `?token=`; all sockets watch one job. Memory per connection = the daphne
process's RSS growth from before the first connection to after the last, divided by the connections held.
"""
from __future__ import annotations

import time
from typing import Any

from . import common

CLIENT_PROCS = 4


def hold(group: Any, name: str, app: str, count: int, job_id: str, token: str, *, plain: bool = False,
         **env: str) -> dict[str, Any]:
    port = group.start_daphne(name, app=app, plain=plain, **env)
    pid = group.procs[name].pid
    clients = common.Clients()
    try:
        # One connection first, so what Django loads lazily on the first request is not counted per socket.
        clients.start("idle", [{"base": f"ws://127.0.0.1:{port}", "job_id": job_id, "token": token, "count": 1}])
        clients.wait_ready(30)
        clients.go()
        common._readline(clients.procs[0], 60)
        time.sleep(1.0)
        before = common.rss_kb(pid)
        warm = clients.procs
        clients.procs = []
        shares = common.split(list(range(count)), CLIENT_PROCS)
        clients.start("idle", [{"base": f"ws://127.0.0.1:{port}", "job_id": job_id, "token": token,
                                "count": len(share), "parallel": 16} for share in shares])
        clients.wait_ready(60)
        started = time.monotonic()
        clients.go()
        opened = [__import__("json").loads(common._readline(p, 600)[6:]) for p in clients.procs]
        connect_s = time.monotonic() - started
        time.sleep(3.0)
        after = common.rss_kb(pid)
        alive = group.procs[name].poll() is None
        for proc in clients.procs + warm:
            proc.stdin.write("STOP\n")
            proc.stdin.flush()
        clients.procs += warm
        finals = clients.results(120)
    finally:
        clients.stop()
        group.stop(name)
    held = sum(o["opened"] for o in opened)
    return {
        "connections": held,
        "handshake_errors": sum(o["errors"] for o in opened),
        "error_kinds": sorted({k for o in opened for k in o["error_kinds"]}),
        "alive_at_end": sum(f["alive_at_end"] for f in finals) - 1,
        "kb_per_connection": round((after - before) / max(held, 1), 1),
        "rss_before_mb": round(before / 1024, 1), "rss_after_mb": round(after / 1024, 1),
        "connect_per_s": round(held / connect_s, 1), "server_alive": alive,
    }


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    target, baseline_target = (500, 500) if quick else (19000, 10000)
    token, job_id = common.idle_watched_job()
    group = common.process_group()
    try:
        base = hold(group, "ws-plain", "bench.plain_asgi:application", baseline_target, job_id, token, plain=True,
                    CHANNEL_LAYER_BACKEND="channels_redis.core.RedisChannelLayer")
        ours = hold(group, "ws-idle", "config.asgi:application", target, job_id, token, **common.WEB_ENV)
    finally:
        group.stop_all()
    return {
        "ws_idle_connections": ours["connections"],
        "ws_kb_per_connection": ours["kb_per_connection"],
        "ws_handshake_errors": ours["handshake_errors"],
        "ws_idle_details": ours,
        "ws_baseline_connections": base["connections"],
        "ws_baseline_kb_per_connection": base["kb_per_connection"],
        "ws_baseline_handshake_errors": base["handshake_errors"],
        "ws_baseline_details": base,
        "ws_idle_requested": target,
    }
