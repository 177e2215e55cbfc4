"""Websocket fan-out benchmark: channels-redis RedisChannelLayer vs RedisPubSubChannelLayer.

Scenarios (CONTRACT.md status messages through the real publisher and consumers, served as README tells
production to serve websockets: one daphne process per core, clients balanced across them):
  one-job:   1 job x 1,000 watchers, 10 updates/s
  many-jobs: 100 jobs x 10 watchers, 100 updates/s in total (1/s per job)
  ten-k:     1 job x 10,000 watchers, 2 updates/s (--watchers overrides the count, e.g. for a quick run)
Clients are `websockets` asyncio clients with a token, spread over several processes, on loopback.
Latency = client receive time - publish time (carried in `current_stage`, so the payload stays small);
a message not received within the grace period after the run counts as lost.

    .venv/bin/python bench/ws_fanout.py                       # both layers, both scenarios (~3 min)
    .venv/bin/python bench/ws_fanout.py --layers pubsub --scenarios one-job --duration 10

Needs REDIS_URL (default redis://127.0.0.1:6379/0); uses a throwaway SQLite database (or the database at
WS_FANOUT_DATABASE_URL, migrated, where it only adds rows) and its own Redis key prefix, removed afterwards.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "patches.channels_redis_pubsub.ResyncingPubSubChannelLayer",  # the production default (config/settings.py)
}
# How each is served. "pubsub" is production: our consumers (config.asgi) under `python -m patches.daphne`.
# "core" is the baseline the issue names: a plain consumer (bench/plain_asgi.py) under stock daphne.
APPS = {"core": "bench.plain_asgi:application", "pubsub": "config.asgi:application"}
SERVERS = {"core": "daphne", "pubsub": "patches.daphne"}


@dataclass(frozen=True)
class Scenario:
    name: str
    jobs: int
    watchers_per_job: int
    updates_per_s: float  # in total, round-robin over the jobs


SCENARIOS = {
    "one-job": Scenario("one-job", jobs=1, watchers_per_job=1000, updates_per_s=10),
    "many-jobs": Scenario("many-jobs", jobs=100, watchers_per_job=10, updates_per_s=100),
    "ten-k": Scenario("ten-k", jobs=1, watchers_per_job=10_000, updates_per_s=2),
}


# --- client processes ----------------------------------------------------------------------------------

async def client_main(config: dict) -> None:
    """Open the assigned sockets, print READY, wait for GO on stdin, record arrivals, print a JSON summary."""
    from websockets.asyncio.client import connect

    limit = asyncio.Semaphore(32)  # daphne's connect path does a few queries; do not stampede it

    errors: list[str] = []

    async def open_one(index: int, job_id: str):
        base = config["bases"][index % len(config["bases"])]  # what the balancer does: spread over daphnes
        async with limit:
            try:
                ws = await connect(f"{base}/ws/jobs/{job_id}/?token={config['token']}", open_timeout=120,
                                   ping_interval=None, max_queue=None, compression=None)
                snapshot = json.loads(await ws.recv())
                assert snapshot["type"] == "status", snapshot
                return job_id, ws
            except Exception as exc:  # noqa: BLE001 - a refused handshake is a result: its messages count as lost
                errors.append(type(exc).__name__)
                return None

    opened = await asyncio.gather(*(open_one(i, job_id) for i, job_id in enumerate(config["jobs"])))
    sockets = [socket_ for socket_ in opened if socket_ is not None]
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    latencies: list[float] = []
    received: list[int] = [0] * len(sockets)

    async def read(index: int, ws) -> None:
        seen: set[int] = set()
        try:
            async for raw in ws:
                now = time.time()
                message = json.loads(raw)
                if message.get("type") != "status" or message["seq"] in seen:
                    continue
                seen.add(message["seq"])
                latencies.append(now - float(message["current_stage"][2:]))
                received[index] += 1
        except Exception:  # noqa: BLE001 - a dropped connection shows up as lost messages
            pass

    readers = [asyncio.create_task(read(i, ws)) for i, (_, ws) in enumerate(sockets)]
    await asyncio.sleep(config["listen_s"])
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for _, ws in sockets), return_exceptions=True)
    # "jobs" lists every assigned socket, opened or not: the runner expects each one's messages.
    print(json.dumps({"latencies": latencies, "received": received, "jobs": config["jobs"],
                      "connect_errors": len(errors), "error_kinds": sorted(set(errors))[:5]}), flush=True)


# --- orchestration -------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def setup_django(db_path: Path, prefix: str) -> None:
    # WS_FANOUT_DATABASE_URL (bench/fanout.py passes the bench run's PostgreSQL database): thousands of
    # handshakes read the token and the job at once, which a throwaway SQLite file answers with errors.
    database_url = os.environ.get("WS_FANOUT_DATABASE_URL") or f"sqlite:///{db_path}"
    os.environ.update(DATABASE_URL=database_url, REDIS_KEY_PREFIX=prefix, LOG_LEVEL="WARNING",
                      DJANGO_SETTINGS_MODULE="config.settings")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_jobs(count: int) -> tuple[str, list[str], str]:
    """A user with a token and `count` jobs in one project (rows written directly: no dispatch, no pushes)."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from jobs.models import GenerationJob
    from projects.models import Project

    user = get_user_model().objects.create_user(f"bench-{uuid.uuid4().hex[:6]}", password=uuid.uuid4().hex)
    project = Project.objects.create(owner=user, name="bench", script="# Scene 1\nBench.\n")
    jobs = GenerationJob.objects.bulk_create(
        [GenerationJob(project=project, job_type="image_generation", status="processing") for _ in range(count)])
    return Token.objects.create(user=user).key, [str(job.pk) for job in jobs], str(project.pk)


def use_layer(backend: str, prefix: str) -> None:
    """Point this process's channel layer (what realtime.publish uses) at `backend`."""
    from channels.layers import channel_layers
    from django.conf import settings
    from django.utils.module_loading import import_string

    config = dict(settings.CHANNEL_LAYERS["default"]["CONFIG"])
    channel_layers.set("default", import_string(backend)(**config))


async def publish_for(job_ids: list[str], project_id: str, rate: float, duration: float) -> dict[str, int]:
    """Publish status messages round-robin over the jobs at `rate`/s for `duration` s; seqs sent per job."""
    from realtime import events, publish

    seqs = {job_id: 0 for job_id in job_ids}
    start, sent = time.monotonic(), 0
    while time.monotonic() - start < duration:
        job_id = job_ids[sent % len(job_ids)]
        seqs[job_id] += 1
        message = events.status_message(job_id=job_id, status="processing", progress=min(100, seqs[job_id] / 10),
                                        current_stage=f"t={time.time():.6f}", error_message=None,
                                        seq=seqs[job_id], result=None)
        await publish.send_status(job_id, project_id, message)
        sent += 1
        await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
    return seqs


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("daphne did not start")


def run_one(layer: str, scenario: Scenario, args: argparse.Namespace, db_path: Path, prefix: str) -> dict:
    backend = LAYERS[layer]
    use_layer(backend, prefix)
    token, job_ids, project_id = make_jobs(scenario.jobs)
    ports = [free_port() for _ in range(args.daphnes)]
    # WS_SOCKETS_PER_USER=0: every watcher here is the same user (the per-user cap would refuse most).
    env = dict(os.environ, CHANNEL_LAYER_BACKEND=backend, PYTHONUNBUFFERED="1", WS_SOCKETS_PER_USER="0")
    server_name = args.server or SERVERS[layer]
    server = [sys.executable, "-m", "patches.daphne"] if server_name == "patches.daphne" else [
        str(Path(sys.executable).parent / "daphne")]
    daphnes = [subprocess.Popen([*server, "-b", "127.0.0.1", "-p", str(port),
                                 APPS[layer]], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True) for port in ports]
    clients: list[subprocess.Popen] = []
    try:
        for port, daphne in zip(ports, daphnes):
            wait_port(port, daphne)
        assignments = [job_id for job_id in job_ids for _ in range(scenario.watchers_per_job)]
        shares = [assignments[i::args.client_procs] for i in range(args.client_procs)]
        listen_s = args.duration + args.grace
        for share in shares:
            config = {"bases": [f"ws://127.0.0.1:{port}" for port in ports], "token": token, "jobs": share,
                      "listen_s": listen_s}
            clients.append(subprocess.Popen([sys.executable, __file__, "--client", json.dumps(config)], cwd=ROOT,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        connect_started = time.monotonic()
        for client in clients:
            line = client.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"client failed to connect: {line!r}")
        connect_s = time.monotonic() - connect_started
        time.sleep(1.0)  # let the last group_add settle (pubsub subscribes asynchronously)
        for client in clients:
            client.stdin.write("GO\n")
            client.stdin.flush()
        seqs = asyncio.run(publish_for(job_ids, project_id, scenario.updates_per_s, args.duration))
        latencies: list[float] = []
        expected = received = connect_errors = 0
        error_kinds: set[str] = set()
        for client in clients:
            out, _ = client.communicate(timeout=listen_s + 60)
            summary = json.loads(out.strip().splitlines()[-1])
            latencies += summary["latencies"]
            received += sum(summary["received"])
            connect_errors += summary["connect_errors"]
            error_kinds.update(summary["error_kinds"])
            expected += sum(seqs[job_id] for job_id in summary["jobs"])
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
        for daphne in daphnes:
            daphne.terminate()
        for daphne in daphnes:
            try:
                daphne.wait(10)
            except subprocess.TimeoutExpired:
                daphne.kill()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        "layer": layer, "scenario": scenario.name, "watchers": len(job_ids) * scenario.watchers_per_job,
        "daphnes": len(ports), "server": server_name, "app": APPS[layer],
        "connect_s": round(connect_s, 1),
        "connect_errors": connect_errors, "error_kinds": sorted(error_kinds),
        "published": sum(seqs.values()), "expected": expected, "received": received, "lost": expected - received,
        "lost_pct": round(100 * (expected - received) / expected, 2) if expected else 0.0,
        "p50_ms": round(pct(0.50), 1), "p99_ms": round(pct(0.99), 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else float("nan"),
    }


def cleanup_redis(prefix: str) -> None:
    """Delete this run's keys (its own prefix only) from the channel layer's Redis database."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_CHANNELS_URL)
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--layers", default="core,pubsub")
    parser.add_argument("--scenarios", default="one-job,many-jobs")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of publishing per run")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds clients keep listening afterwards")
    parser.add_argument("--client-procs", type=int, default=3)
    parser.add_argument("--watchers", type=int, default=0, help="override the scenarios' watchers per job")
    parser.add_argument("--daphnes", type=int, default=os.cpu_count() or 1,
                        help="daphne processes (README: one per core), clients spread across them")
    parser.add_argument("--server", choices=("patches.daphne", "daphne"), default=None,
                        help="override: python -m patches.daphne (production) or stock daphne (baseline)")
    args = parser.parse_args()
    if args.client:
        asyncio.run(client_main(json.loads(args.client)))
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="ws-fanout-"))
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    setup_django(workdir / "bench.sqlite3", prefix)
    results = []
    try:
        for scenario_name in args.scenarios.split(","):
            for layer in args.layers.split(","):
                scenario = SCENARIOS[scenario_name]
                if args.watchers:
                    scenario = dataclasses.replace(scenario, watchers_per_job=args.watchers)
                result = run_one(layer, scenario, args, workdir / "bench.sqlite3", prefix)
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        cleanup_redis(prefix)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n{'scenario':<10} {'layer':<7} {'published':>9} {'expected':>9} {'lost':>7} {'lost%':>6} "
          f"{'p50 ms':>9} {'p99 ms':>9}")
    for r in results:
        print(f"{r['scenario']:<10} {r['layer']:<7} {r['published']:>9} {r['expected']:>9} {r['lost']:>7} "
              f"{r['lost_pct']:>6} {r['p50_ms']:>9} {r['p99_ms']:>9}")
    for scenario_name in args.scenarios.split(","):
        by_layer = {r["layer"]: r for r in results if r["scenario"] == scenario_name}
        if {"core", "pubsub"} <= set(by_layer):
            core, pubsub = by_layer["core"], by_layer["pubsub"]
            print(f"{scenario_name}: core/pubsub p50 x{core['p50_ms'] / max(pubsub['p50_ms'], 0.1):.1f}, "
                  f"p99 x{core['p99_ms'] / max(pubsub['p99_ms'], 0.1):.1f}, lost {core['lost']} vs {pubsub['lost']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
