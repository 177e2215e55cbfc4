"""What one idle authenticated websocket costs a web process, by allocation site and by object type.

    .venv/bin/python -m bench.ws_memprofile [--sockets 1000] [--frames 6] [--plain]

Starts one web process (`python -m bench.ws_memprofile serve …`: patches.daphne, or stock daphne with the
plain consumer with `--plain`) with tracemalloc on, opens one socket (so what loads lazily is not counted),
takes a snapshot, opens `--sockets` more, takes another, and prints per socket: RSS growth, the traced
Python allocations that grew, grouped by allocation site (the innermost frames of our code and the
libraries'), and the growth of live objects by type (gc) with their shallow sizes. Same database, Redis
and clients as bench/ws_idle.py; nothing is written to var/bench/results.json. tracemalloc slows the
server and adds its own bookkeeping to RSS (not to the traced figures), so read the RSS figure from
`BENCH_ONLY=ws_idle make bench`, and the split from here.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

DUMP_ENV = "WS_MEMPROFILE_DUMP"


# --- inside the web process -----------------------------------------------------------------------------

def _dump(*_: Any) -> None:
    """SIGUSR1: write a tracemalloc snapshot and live-object counts by type to DUMP_ENV.<n>."""
    import tracemalloc

    gc.collect()
    base = os.environ[DUMP_ENV]
    index = len([p for p in Path(base).parent.glob(Path(base).name + ".*.done")])
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(f"{base}.{index}.snap")
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
    Path(f"{base}.{index}.types.json").write_text(json.dumps({"counts": counts, "sizes": sizes,
                                                              "held_by": _held_by(WHY_HELD)}))
    Path(f"{base}.{index}.done").write_text("ok")


# Types whose holders the dump names (what keeps one of them alive: the referrers' types and attributes).
WHY_HELD = ("daphne.http_protocol.WebRequest", "twisted.web.http.HTTPChannel", "rest_framework.authtoken.models.Token",
            "django.contrib.auth.models.User")


def _held_by(names: tuple[str, ...]) -> dict[str, list[str]]:
    found: dict[str, Any] = {}
    for obj in gc.get_objects():
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        if name in names:
            found[name] = obj  # the newest one
    out = {}
    for name, obj in found.items():
        holders = []
        for ref in gc.get_referrers(obj):
            if isinstance(ref, dict):
                owners = [type(o).__qualname__ for o in gc.get_referrers(ref) if getattr(o, "__dict__", None) is ref]
                keys = [k for k, v in ref.items() if v is obj][:3]
                holders.append(f"dict{keys} of {owners or '?'}")
            elif not isinstance(ref, list) or len(ref) < 10000:
                holders.append(type(ref).__qualname__)
        out[name] = holders[:12]
    del found
    return out


def serve(argv: list[str], plain: bool, frames: int) -> None:
    import tracemalloc

    if frames:
        tracemalloc.start(frames)
    signal.signal(signal.SIGUSR1, _dump)
    sys.argv = ["daphne", *argv]
    if plain:
        from daphne.cli import CommandLineInterface

        CommandLineInterface.entrypoint()
    else:
        from patches.daphne import main

        main()


# --- the driver -----------------------------------------------------------------------------------------

def _snapshot(pid: int, base: str, index: int) -> tuple[Any, dict[str, Any]]:
    import tracemalloc

    os.kill(pid, signal.SIGUSR1)
    done = Path(f"{base}.{index}.done")
    deadline = time.monotonic() + 300
    while not done.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the web process wrote no snapshot within 300 s")
        time.sleep(0.2)
    snap = Path(f"{base}.{index}.snap")
    return (tracemalloc.Snapshot.load(str(snap)) if snap.exists() else None,
            json.loads(Path(f"{base}.{index}.types.json").read_text()))


def _site(trace: Any) -> str:
    """The allocation's innermost frames, outside the standard library where possible."""
    frames = [f"{Path(f.filename).parent.name}/{Path(f.filename).name}:{f.lineno}" for f in trace]
    return " < ".join(frames[:4])


def profile(sockets: int, plain: bool, frames: int, top: int) -> dict[str, Any]:
    from . import common, ws_idle

    env = common.BenchEnv()
    env.open()
    group = None
    clients = common.Clients()
    try:
        token, job_id = common.idle_watched_job()
        group = common.process_group()
        from tests.processes import free_port, subprocess_env

        port = free_port()
        base = str(env.workdir / "wsmem")
        app = "bench.plain_asgi:application" if plain else "config.asgi:application"
        extra = {"CHANNEL_LAYER_BACKEND": "channels_redis.core.RedisChannelLayer"} if plain else dict(common.WEB_ENV)
        command = [sys.executable, "-m", "bench.ws_memprofile", "serve", "--frames", str(frames),
                   *(["--plain"] if plain else []), "--", "-b", "127.0.0.1", "-p", str(port), app]
        proc = group.start("wsmem", command, subprocess_env(**extra, **{DUMP_ENV: base}))
        _wait_port(port, proc)
        url = f"ws://127.0.0.1:{port}"
        clients.start("idle", [{"base": url, "job_id": job_id, "token": token, "count": 1}])
        clients.wait_ready(30)
        clients.go()
        common._readline(clients.procs[0], 60)
        time.sleep(1.0)
        rss_before = common.rss_kb(proc.pid)
        snap_a, types_a = _snapshot(proc.pid, base, 0)
        rss_a = common.rss_kb(proc.pid)
        warm, clients.procs = clients.procs, []
        clients.start("idle", [{"base": url, "job_id": job_id, "token": token, "count": len(share), "parallel": 16}
                               for share in common.split(list(range(sockets)), ws_idle.CLIENT_PROCS)])
        clients.wait_ready(60)
        clients.go()
        opened = sum(json.loads(common._readline(p, 900)[6:])["opened"] for p in clients.procs)
        time.sleep(3.0)
        rss_after = common.rss_kb(proc.pid)
        snap_b, types_b = _snapshot(proc.pid, base, 1)
        clients.procs += warm
    finally:
        clients.stop()
        if group is not None:
            group.stop_all()
        env.close()
    return _report(opened, rss_before, rss_a, rss_after, snap_a, snap_b, types_a, types_b, top)


def _wait_port(port: int, proc: Any) -> None:
    import socket

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the profiled web process exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the profiled web process did not listen within 120 s")


def _report(opened: int, rss_before: int, rss_a: int, rss_after: int, snap_a: Any, snap_b: Any,
            types_a: dict[str, Any], types_b: dict[str, Any], top: int) -> dict[str, Any]:
    per = max(opened, 1)
    stats = snap_b.compare_to(snap_a, "traceback") if snap_a is not None else []
    traced = sum(s.size_diff for s in stats)
    sites = [{"bytes_per_socket": round(s.size_diff / per), "objects_per_socket": round(s.count_diff / per, 2),
              "site": _site(s.traceback)} for s in stats[:top] if s.size_diff > 0]
    by_file: Counter[str] = Counter()
    for s in (snap_b.compare_to(snap_a, "filename") if snap_a is not None else []):
        by_file[s.traceback[0].filename.split("site-packages/")[-1].replace(str(Path.cwd()) + "/", "")] += s.size_diff
    kinds = sorted(((name, (types_b["counts"].get(name, 0) - types_a["counts"].get(name, 0)) / per,
                     (types_b["sizes"].get(name, 0) - types_a["sizes"].get(name, 0)) / per)
                    for name in types_b["counts"]), key=lambda row: -row[2])
    return {
        "sockets": opened,
        "rss_kb_per_socket": round((rss_after - rss_a) / per, 1),
        "rss_before_mb": round(rss_before / 1024, 1),
        "traced_kb_per_socket": round(traced / per / 1024, 2),
        "by_file_kb_per_socket": {k: round(v / per / 1024, 2) for k, v in by_file.most_common(top) if v > 0},
        "sites": sites,
        "held_by": types_b.get("held_by"),
        "types_per_socket": [{"type": n, "count": round(c, 2), "shallow_bytes": round(b)} for n, c, b in kinds[:top]
                             if c > 0.05],
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        parser = argparse.ArgumentParser()
        parser.add_argument("--frames", type=int, default=6)
        parser.add_argument("--plain", action="store_true")
        args, rest = parser.parse_known_args(sys.argv[2:])
        serve([a for a in rest if a != "--"], args.plain, args.frames)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=6, help="tracemalloc frames (0: object counts only)")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--plain", action="store_true", help="the plain consumer on stock daphne (the baseline)")
    args = parser.parse_args()
    print(json.dumps(profile(args.sockets, args.plain, args.frames, args.top), indent=1))


if __name__ == "__main__":
    main()
