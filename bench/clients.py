"""Load clients, one asyncio process each: `python -m bench.clients MODE CONFIG_JSON`.

Protocol with the runner: connect or prepare, print `READY <json>`, wait for `GO` on stdin, do the work,
print one JSON summary line. No Django here: these processes only speak HTTP/websockets on loopback.

Modes:
  watch  websocket clients of /ws/jobs/<id>/; latency = receive time - the `t=<epoch>` in current_stage
  poll   GET /api/jobs/<id>/ every `interval_s` on a keep-alive connection; latency of each new stage seen
  http   `connections` keep-alive connections hammering one path for `duration_s`; counts responses
  idle   open `count` authenticated websockets, report, hold them until STOP (or `hold_s`), close
"""
from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from typing import Any


def stamp_of(stage: str) -> float | None:
    if stage.startswith("t="):
        try:
            return float(stage[2:])
        except ValueError:
            return None
    return None


def ready(status: dict[str, Any] | None = None) -> None:
    print("READY", json.dumps(status or {}), flush=True)


async def wait_line(expected: str) -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == expected:
            return


# --- a minimal HTTP/1.1 keep-alive client (cheap on CPU, so the load generator does not starve daphne) ---

class HttpConnection:
    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **headers}.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\n{self.head}\r\n".encode("latin-1"))
        status_line = await self.reader.readline()
        if not status_line:
            await self.close()
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, chunked, close = None, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            body = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        else:
            body = await self.reader.readexactly(length or 0)
        if close:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# --- modes ---------------------------------------------------------------------------------------------

async def watch(config: dict[str, Any]) -> None:
    from websockets.asyncio.client import connect

    limit = asyncio.Semaphore(32)  # the connect path does a couple of queries; do not stampede daphne
    errors = 0
    bases = config.get("bases") or [config["base"]]  # several web processes: spread as a balancer would

    async def open_one(index: int, job_id: str):
        nonlocal errors
        async with limit:
            try:
                ws = await connect(f"{bases[index % len(bases)]}/ws/jobs/{job_id}/?token={config['token']}",
                                   open_timeout=120,
                                   ping_interval=None, max_queue=None, compression=None)
                snapshot = json.loads(await ws.recv())
                return job_id, ws, int(snapshot["seq"])
            except Exception:  # noqa: BLE001 - counted: a failed handshake is a result, not a crash
                errors += 1
                return None

    opened = [s for s in await asyncio.gather(*(open_one(i, j) for i, j in enumerate(config["jobs"])))
              if s is not None]
    ready({"opened": len(opened), "errors": errors})
    await wait_line("GO")
    latencies: list[float] = []
    seqs: list[list[tuple[int, float]]] = [[] for _ in opened]  # (seq, receive time) per socket

    async def read(index: int, ws: Any, snapshot_seq: int) -> None:
        seen: set[int] = set()
        try:
            async for raw in ws:
                now = time.time()
                message = json.loads(raw)
                seq = message.get("seq")
                if message.get("type") != "status" or seq in seen or seq <= snapshot_seq:
                    continue
                seen.add(seq)
                seqs[index].append((seq, now))
                stamp = stamp_of(message.get("current_stage") or "")
                if stamp is not None:
                    latencies.append(now - stamp)
        except Exception:  # noqa: BLE001 - a dropped connection shows up as lost updates
            pass

    readers = [asyncio.create_task(read(i, ws, snap)) for i, (_, ws, snap) in enumerate(opened)]
    await asyncio.sleep(config["listen_s"])
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for _, ws, _ in opened), return_exceptions=True)
    print(json.dumps({"latencies": latencies, "sockets": [[job_id, seqs[i]] for i, (job_id, _, _) in enumerate(opened)],
                      "handshakes": len(config["jobs"]), "errors": errors}), flush=True)


async def poll(config: dict[str, Any]) -> None:
    headers = {"Authorization": f"Token {config['token']}", "Accept": "application/json"}
    ready()
    await wait_line("GO")
    stop_at = time.monotonic() + config["listen_s"]
    latencies: list[float] = []
    requests = errors = 0

    async def poller(job_id: str) -> None:
        nonlocal requests, errors
        conn = HttpConnection(config["host"], config["port"], headers)
        last_stage = None
        await asyncio.sleep(random.uniform(0, config["interval_s"]))  # clients do not poll in step
        next_at = time.monotonic()
        while time.monotonic() < stop_at:
            try:
                status, body = await conn.get(f"/api/jobs/{job_id}/")
                requests += 1
                now = time.time()
                if status != 200:
                    errors += 1
                else:
                    stage = json.loads(body)["current_stage"]
                    if stage != last_stage:
                        stamp = stamp_of(stage)
                        if last_stage is not None and stamp is not None:
                            latencies.append(now - stamp)
                        last_stage = stage
            except Exception:  # noqa: BLE001
                errors += 1
                await conn.close()
            # A fixed period, like setTimeout-based pollers: the next poll after `interval_s`.
            next_at += config["interval_s"]
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await conn.close()

    await asyncio.gather(*(poller(job_id) for job_id in config["jobs"]))
    print(json.dumps({"latencies": latencies, "requests": requests, "errors": errors}), flush=True)


async def http(config: dict[str, Any]) -> None:
    headers = dict(config.get("headers") or {})
    ports = config["ports"]
    ready()
    await wait_line("GO")
    warmup_until = time.monotonic() + config["warmup_s"]
    stop_at = warmup_until + config["duration_s"]
    ok = bad = errors = 0
    latencies: list[float] = []

    async def loop_one(index: int) -> None:
        nonlocal ok, bad, errors
        conn = HttpConnection("127.0.0.1", ports[index % len(ports)], headers)
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                status, _ = await conn.get(config["path"])
            except Exception:  # noqa: BLE001
                errors += 1
                await conn.close()
                await asyncio.sleep(0.01)
                continue
            if started < warmup_until:
                continue
            if status == 200:
                ok += 1
                latencies.append(time.monotonic() - started)
            else:
                bad += 1
        await conn.close()

    await asyncio.gather(*(loop_one(i) for i in range(config["connections"])))
    latencies.sort()
    print(json.dumps({"ok": ok, "bad": bad, "errors": errors, "duration_s": config["duration_s"],
                      "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None}), flush=True)


async def idle(config: dict[str, Any]) -> None:
    from websockets.asyncio.client import connect

    limit = asyncio.Semaphore(config.get("parallel", 32))
    sockets: list[Any] = []
    errors: list[str] = []
    url = f"{config['base']}/ws/jobs/{config['job_id']}/?token={config['token']}"

    async def open_one() -> None:
        async with limit:
            try:
                ws = await connect(url, open_timeout=60, ping_interval=None, close_timeout=1, compression=None,
                                   max_queue=4)
                message = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if message.get("type") != "status":
                    raise RuntimeError(f"no snapshot: {message}")
                sockets.append(ws)
            except Exception as exc:  # noqa: BLE001 - counted as a handshake error
                errors.append(type(exc).__name__)

    ready({})
    await wait_line("GO")
    started = time.monotonic()
    await asyncio.gather(*(open_one() for _ in range(config["count"])))
    print("OPENED", json.dumps({"opened": len(sockets), "errors": len(errors), "seconds": time.monotonic() - started,
                                "error_kinds": sorted(set(errors))[:5]}), flush=True)
    await wait_line("STOP")
    alive = sum(1 for ws in sockets if ws.state.name == "OPEN")
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    print(json.dumps({"opened": len(sockets), "alive_at_end": alive, "errors": len(errors)}), flush=True)


MODES = {"watch": watch, "poll": poll, "http": http, "idle": idle}


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # thousands of sockets per client process
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    mode, config = sys.argv[1], json.loads(sys.argv[2])
    asyncio.run(MODES[mode](config))


if __name__ == "__main__":
    main()
