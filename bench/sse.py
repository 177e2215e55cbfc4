"""Server-Sent Events: push latency against the websocket push in the same run, and idle memory per stream.

Push: one running job watched by WATCHERS SSE streams and WATCHERS websockets on the same daphne; this
process reports progress through the production path (bench/push.py's `report_updates`, stage `t=<epoch>`)
and latency = receive time - report time, per transport. Idle: STREAMS SSE streams on one job held by one
daphne; memory per stream = the process's RSS growth from before the first stream to after the last,
divided by the streams held (as bench/ws_idle.py for websockets). The clients are asyncio tasks in a
thread of this process (HTTP/1.0 requests, so the stream is not chunked).
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from . import common
from .push import report_updates


async def _open_sse(port: int, path: str, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


def _latency(message: dict[str, Any], at: float, into: list[float]) -> None:
    stage = message.get("current_stage") or ""
    if stage.startswith("t="):
        into.append(at - float(stage[2:]))


async def _watch_sse(port: int, path: str, token: str, stop: asyncio.Event, ready: list[int],
                     into: list[float]) -> None:
    reader, writer = await _open_sse(port, path, token)
    buffer = b""
    try:
        while not stop.is_set():
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 0.5)
            except asyncio.TimeoutError:
                continue
            if not chunk:
                return
            at = time.time()
            *lines, buffer = (buffer + chunk).split(b"\n")
            for line in lines:
                if line.startswith(b"data: "):
                    message = json.loads(line[6:])
                    if message.get("seq") and not ready.count(id(writer)):
                        ready.append(id(writer))
                    _latency(message, at, into)
    finally:
        writer.close()


async def _watch_ws(port: int, job_id: str, token: str, stop: asyncio.Event, ready: list[int],
                    into: list[float]) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/ws/jobs/{job_id}/?token={token}", open_timeout=60) as socket:
        ready.append(id(socket))
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(socket.recv(), 0.5)
            except asyncio.TimeoutError:
                continue
            _latency(json.loads(raw), time.time(), into)


def _push(port: int, job_id: str, token: str, watchers: int, duration: float) -> dict[str, list[float]]:
    """Both kinds of watcher on one job while this thread reports progress for `duration` seconds."""
    sse: list[float] = []
    ws: list[float] = []
    ready: list[int] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def watch_all() -> None:
        tasks = [asyncio.ensure_future(_watch_sse(port, f"/api/jobs/{job_id}/stream/", token, stop, ready, sse))
                 for _ in range(watchers)]
        tasks += [asyncio.ensure_future(_watch_ws(port, job_id, token, stop, ready, ws)) for _ in range(watchers)]
        await asyncio.gather(*tasks)

    thread = threading.Thread(target=loop.run_until_complete, args=(watch_all(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while len(ready) < 2 * watchers and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the last subscriptions settle
    report_updates([job_id], duration, 20.0)
    time.sleep(2.0)
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    return {"sse": sse, "ws": ws}


def _idle(port: int, pid: int, job_id: str, token: str, streams: int) -> dict[str, Any]:
    """Open `streams` SSE streams on one job, wait for each one's snapshot, and weigh the process."""
    loop = asyncio.new_event_loop()
    path = f"/api/jobs/{job_id}/stream/"

    async def open_until_snapshot() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await _open_sse(port, path, token)
        seen = b""
        while b'"seq"' not in seen:
            chunk = await asyncio.wait_for(reader.read(65536), 60)
            if not chunk:
                raise ConnectionError(seen[-200:])
            seen += chunk
        return reader, writer

    held: list[Any] = [loop.run_until_complete(open_until_snapshot())]  # Django's lazy first-request loads
    time.sleep(1.0)
    before = common.rss_kb(pid)
    async def open_batch(count: int) -> list[Any]:
        return list(await asyncio.gather(*(open_until_snapshot() for _ in range(count))))

    for start in range(0, streams, 100):
        held += loop.run_until_complete(open_batch(min(100, streams - start)))
    time.sleep(3.0)
    after = common.rss_kb(pid)
    for _, writer in held:
        writer.close()
    loop.run_until_complete(asyncio.sleep(0.5))
    loop.close()
    return {"streams": len(held) - 1, "kb_per_stream": round((after - before) / max(1, len(held) - 1), 1),
            "rss_before_mb": round(before / 1024, 1), "rss_after_mb": round(after / 1024, 1)}


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    from jobs import services
    from realtime import publish

    watchers, duration, streams = (20, 3.0, 200) if quick else (100, 30.0, 2000)
    common.raise_open_files_limit()
    user, token = common.make_user_with_token()
    project = common.make_project(user)
    with common.dispatching(None):
        running = str(services.job_create(project=project, job_type="image_generation").pk)
        services.job_start(job_id=running, worker="bench")
        idle_job = str(services.job_create(project=project, job_type="image_generation").pk)
    publish.flush(10)
    group = common.process_group()
    try:
        port = group.start_daphne("sse-daphne", SSE_STREAMS_PER_USER="0", **common.WEB_ENV)
        latencies = _push(port, running, token, watchers, duration)
        idle = _idle(port, group.procs["sse-daphne"].pid, idle_job, token, streams)
    finally:
        group.stop_all()
    sse_p50 = common.percentile(latencies["sse"], 0.5) * 1000
    ws_p50 = common.percentile(latencies["ws"], 0.5) * 1000
    return {
        "sse_push_p50_ms": round(sse_p50, 2),
        "sse_push_p99_ms": round(common.percentile(latencies["sse"], 0.99) * 1000, 2),
        "ws_push_p50_ms": round(ws_p50, 2),
        "ws_push_p99_ms": round(common.percentile(latencies["ws"], 0.99) * 1000, 2),
        "sse_vs_ws_push_ratio": round(sse_p50 / max(ws_p50, 1e-3), 2),
        "sse_push_deliveries": len(latencies["sse"]), "ws_push_deliveries": len(latencies["ws"]),
        "sse_idle_kb_per_stream": idle["kb_per_stream"],
        "sse_idle_details": idle,
    }
