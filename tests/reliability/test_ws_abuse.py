"""Websocket abuse against one daphne: junk and oversize frames, ping floods, 1,000 connect/disconnect
cycles and a client that never reads. Daphne stays up, its memory stays bounded, and an ordinary client
watching a running job still gets every event.
"""
from __future__ import annotations

import asyncio
import json
import random

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from jobs import services
from tests.e2e.test_ws_stream import TEST_TASKS, run_steps_task
from tests.factories import make_project, make_user

from .conftest import Watchers, assert_settled, token_for

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

CYCLES = 1000
RSS_GROWTH_LIMIT = 150 * 1024 * 1024  # generous: the point is "bounded", not a tight budget


async def _recv_json(socket, timeout: float = 10.0) -> dict:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


async def junk_frames(url: str) -> None:
    """Random text and binary frames each get an error message; the connection stays usable."""
    rng = random.Random(7)
    async with connect(url, max_size=None) as socket:
        await _recv_json(socket)  # snapshot
        frames: list[str | bytes] = []
        for _ in range(150):
            frames.append("".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(1, 300))))
            frames.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
        frames += ['{"type": "resume", "after_seq": -1}', '{"type": 5}', "[]", "null", '{"type": "resume"}',
                   '{"type": "resume", "after_seq": 99999999999}', '{"type": "subscribe", "job_id": "x"}']
        for frame in frames:
            await socket.send(frame)
        for _ in frames:
            answer = await _recv_json(socket)
            assert answer["type"] in ("error", "status"), answer
        await socket.send("ping")
        assert await asyncio.wait_for(socket.recv(), 10) == "pong"


async def oversize_frames(url: str) -> None:
    """A frame past the limit is refused with an error (or the server closes the socket): never a crash."""
    for size in (5_000, 100_000, 2_000_000):
        async with connect(url, max_size=None) as socket:
            await _recv_json(socket)
            try:
                await socket.send(json.dumps({"type": "ping", "pad": "x" * size}))
                answer = await _recv_json(socket)
                assert answer["type"] == "error" and "too large" in answer["message"], answer
            except ConnectionClosed:
                pass


async def ping_flood(url: str, count: int = 3000) -> None:
    """Thousands of pings without waiting: every one answered, in order."""
    async with connect(url, max_size=None) as socket:
        await _recv_json(socket)
        await asyncio.gather(*(socket.send("ping" if n % 2 else '{"type":"ping"}') for n in range(count)))
        answers = [await asyncio.wait_for(socket.recv(), 20) for _ in range(count)]
        assert answers.count("pong") == count // 2, answers[:5]


async def connect_cycles(url: str, cycles: int = CYCLES, parallel: int = 20) -> None:
    """Connect, take the snapshot, disconnect: `cycles` times, `parallel` at once."""

    async def runner(n: int) -> None:
        for _ in range(n):
            async with connect(url, max_size=None) as socket:
                assert (await _recv_json(socket))["type"] == "status"

    await asyncio.gather(*(runner(cycles // parallel) for _ in range(parallel)))


async def never_reads(url: str) -> None:
    """Asks for thousands of snapshots and reads none of them, then goes away."""
    async with connect(url, max_size=None, max_queue=1) as socket:
        for _ in range(5000):
            await socket.send("refresh")
        await asyncio.sleep(3)


async def abuse(url: str) -> None:
    await asyncio.gather(junk_frames(url), oversize_frames(url), ping_flood(url), never_reads(url))
    await connect_cycles(url)


def test_ws_abuse__daphne_survives_memory_bounded_other_clients_unaffected(processes):
    # Given daphne, and an ordinary client watching another user's job that reports progress for a while
    port = processes.start_daphne(wait=False)
    processes.start_worker(queues="maintenance", concurrency=1, extra_args=TEST_TASKS, wait=False)
    processes.wait_ready()
    user = make_user()
    job = services.job_create(project=make_project(owner=user), job_type="image_generation", params={})
    watchers = Watchers.for_jobs(port, [job], token_for(user), timeout=120).start()
    attacker = make_user()
    target = services.job_create(project=make_project(owner=attacker), job_type="image_generation", params={})
    url = f"ws://127.0.0.1:{port}/ws/jobs/{target.pk}/?token={token_for(attacker)}"
    daphne = psutil.Process(processes.procs["daphne"].pid)
    asyncio.run(connect_cycles(url, cycles=50))  # warm up: imports, connection pools, caches
    rss_before = daphne.memory_info().rss

    # When the abuse runs while the job reports 200 progress steps
    run_steps_task(job, steps=200, pause_s=0.05, last_progress=90.0)
    asyncio.run(asyncio.wait_for(abuse(url), 240))

    # Then daphne is up with bounded memory, still serves, and the ordinary client saw every event
    assert processes.procs["daphne"].poll() is None
    rss_after = daphne.memory_info().rss
    assert rss_after - rss_before < RSS_GROWTH_LIMIT, (rss_before, rss_after)
    asyncio.run(connect_cycles(url, cycles=1, parallel=1))
    assert_settled([job.pk], watchers)
