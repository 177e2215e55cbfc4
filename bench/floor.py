"""The floor: what the push path cannot go below on this machine, timed from Python in the same run.

One sample = one PostgreSQL single-row commit (an autocommitted `UPDATE` of one row of a logged table,
over psycopg as the service's progress write is) + the Redis round trips a push needs (a `PUBLISH` to the
job's group and one to the project's group, as realtime.publish.send_status does, and the subscriber
connection receiving the job's message, as a web process does). Nothing of Django, Channels or daphne.

Millisecond targets hold on one kind of machine only (the first round's push p50 was 1.95 ms on one and
3.1 ms on another of the same kind), so bench/run.py also reports each latency as a ratio to `floor_ms`.
"""
from __future__ import annotations

import os
import time
import uuid
from typing import Any

from . import common

TABLE = "bench_floor"


def _samples(count: int) -> dict[str, list[float]]:
    import psycopg
    import redis
    from django.conf import settings

    job_channel, project_channel = (f"{settings.REDIS_KEY_PREFIX}:floor:{uuid.uuid4().hex}" for _ in range(2))
    client = redis.Redis.from_url(settings.REDIS_CHANNELS_URL)
    subscriber = client.pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(job_channel)
    subscriber.get_message(timeout=1.0)  # the subscribe confirmation
    out: dict[str, list[float]] = {"total": [], "pg": [], "redis": []}
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id int PRIMARY KEY, n bigint NOT NULL)")
        conn.execute(f"INSERT INTO {TABLE} VALUES (1, 0) ON CONFLICT DO NOTHING")
        try:
            for i in range(count + 20):  # the first 20 warm the connections and plans up, not counted
                started = time.perf_counter()
                conn.execute(f"UPDATE {TABLE} SET n = n + 1 WHERE id = 1")
                committed = time.perf_counter()
                client.publish(job_channel, b"x")
                client.publish(project_channel, b"x")
                if subscriber.get_message(timeout=5.0) is None:
                    raise RuntimeError("the floor's subscriber received nothing within 5 s")
                ended = time.perf_counter()
                if i >= 20:
                    out["total"].append((ended - started) * 1000)
                    out["pg"].append((committed - started) * 1000)
                    out["redis"].append((ended - committed) * 1000)
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
            subscriber.close()
            client.close()
    return out


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    samples = _samples(500 if quick else 2000)
    return {
        "floor_ms": round(common.percentile(samples["total"], 0.50), 3),
        "floor_p99_ms": round(common.percentile(samples["total"], 0.99), 3),
        "floor_pg_commit_p50_ms": round(common.percentile(samples["pg"], 0.50), 3),
        "floor_redis_p50_ms": round(common.percentile(samples["redis"], 0.50), 3),
        "floor_samples": len(samples["total"]),
    }
