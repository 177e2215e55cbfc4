"""Websocket abuse against one daphne: junk and oversize frames, ping floods, 1,000 connect/disconnect
cycles, clients that flood and never read, a slow reader and a peer that never reads. Daphne stays up, its
memory stays bounded, abusers are closed, and ordinary clients are served throughout.
"""
from __future__ import annotations

import asyncio
import json
import random
import threading
import time

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


async def junk_frames(url: str, *, opener=connect) -> None:
    """Random text and binary frames each get an error message; the connection stays usable. Sent in
    batches within the message budget (100 at once, 20 a second: WEBSOCKETS in config/settings.py)."""
    rng = random.Random(7)
    async with opener(url, max_size=None) as socket:
        await _recv_json(socket)  # snapshot
        frames: list[str | bytes] = []
        for _ in range(150):
            frames.append("".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(1, 300))))
            frames.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
        frames += ['{"type": "resume", "after_seq": -1}', '{"type": 5}', "[]", "null", '{"type": "resume"}',
                   '{"type": "resume", "after_seq": 99999999999}', '{"type": "subscribe", "job_id": "x"}']
        for start in range(0, len(frames), 50):
            batch = frames[start:start + 50]
            for frame in batch:
                await socket.send(frame)
            for _ in batch:
                answer = await _recv_json(socket)
                while answer["type"] == "queue":  # a place-in-line push of the waiting job, not an answer
                    answer = await _recv_json(socket)
                assert answer["type"] in ("error", "status") and "rate limit" not in answer.get("message", ""), answer
            await asyncio.sleep(50 / 20 + 0.2)
        await socket.send("ping")
        assert await asyncio.wait_for(socket.recv(), 10) == "pong"


async def oversize_frames(url: str, *, opener=connect) -> None:
    """A frame past the limit is refused with an error (or the server closes the socket): never a crash."""
    for size in (5_000, 100_000, 2_000_000):
        async with opener(url, max_size=None) as socket:
            await _recv_json(socket)
            try:
                await socket.send(json.dumps({"type": "ping", "pad": "x" * size}))
                answer = await _recv_json(socket)
                assert answer["type"] == "error" and "too large" in answer["message"], answer
            except ConnectionClosed:
                pass


async def ping_flood(url: str, count: int = 3000, *, opener=connect) -> None:
    """Thousands of pings without waiting: some answered in order, then (rate-limit errors and) a 4429 close,
    for more than the message budget (100) or more than WS_INBOX_MAX (100) messages waiting."""
    async with opener(url, max_size=None) as socket:
        await _recv_json(socket)
        try:
            await asyncio.gather(*(socket.send("ping" if n % 2 else '{"type":"ping"}') for n in range(count)))
        except ConnectionClosed:
            pass  # closed while the flood was still being sent
        answers: list[str] = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                answers.append(await asyncio.wait_for(socket.recv(), 20))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429, closed.value
        pongs = [a for a in answers if a == "pong" or a == '{"type": "pong"}']
        assert 0 < len(pongs) < 200 and answers[:len(pongs)] == pongs, answers[:5]
        assert all('"rate limit' in a for a in answers[len(pongs):]), answers[len(pongs):][:3]


async def connect_cycles(url: str, cycles: int = CYCLES, parallel: int = 20, opener=connect) -> None:
    """Connect, take the snapshot, disconnect: `cycles` times, `parallel` at once (`opener`: how to connect)."""

    async def runner(n: int) -> None:
        for _ in range(n):
            async with opener(url, max_size=None) as socket:
                assert (await _recv_json(socket))["type"] == "status"

    await asyncio.gather(*(runner(cycles // parallel) for _ in range(parallel)))


async def never_reads(url: str, *, opener=connect) -> None:
    """Asks for thousands of snapshots and reads none of them, then goes away."""
    async with opener(url, max_size=None, max_queue=1) as socket:
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


# --- clients that do not read --------------------------------------------------------------------------

FLOOD_RSS_GROWTH_LIMIT = 40 * 1024 * 1024  # daphne's growth while three clients flood (measured: README)
SNAPSHOT_ARTIFACTS = 800  # a completed job's snapshot of about 120 KB


def _big_completed_job(owner) -> object:
    """A completed job whose result lists SNAPSHOT_ARTIFACTS artifacts, so every snapshot is large."""
    job = services.job_create(project=make_project(owner=owner), job_type="image_generation", params={})
    services.job_start(job_id=job.pk, worker="test")
    artifacts = [{"kind": "image", "url": f"/api/jobs/{job.pk}/artifacts/images/scene_{n:03d}.png", "bytes": 1234,
                  "content_type": "image/png", "name": f"scene_{n:03d}.png", "scene": n}
                 for n in range(1, SNAPSHOT_ARTIFACTS + 1)]
    return services.job_complete(job_id=job.pk, result={"artifacts": artifacts})


class RssSampler:
    """The peak RSS of a process, sampled every 50 ms from a thread."""

    def __init__(self, pid: int) -> None:
        self.process, self.peak, self.running = psutil.Process(pid), 0, True
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.05)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join(2)


async def _closed_by_server(socket, within_s: float) -> bool:
    """Drain what the server sent; True when that ends with the connection closed within `within_s`."""
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            await asyncio.wait_for(socket.recv(), max(0.1, deadline - time.monotonic()))
    except ConnectionClosed:
        return True
    except (asyncio.TimeoutError, TimeoutError):
        return False
    return False


async def _probe_connects(url: str, until: float) -> list[float]:
    """Connect, take the snapshot, disconnect, again and again until `until`; each one's seconds."""
    latencies = []
    while time.monotonic() < until:
        started = time.monotonic()
        async with connect(url, max_size=None, open_timeout=5) as socket:
            assert (await _recv_json(socket, timeout=5))["type"] == "status"
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(0.2)
    return latencies


async def _flood_refresh_never_read(url: str, count: int) -> object:
    socket = await connect(url, max_size=None, max_queue=1)
    try:
        for _ in range(count):
            await socket.send("refresh")
    except ConnectionClosed:
        pass
    return socket


def test_ws_abuse__never_reading_refresh_flood_is_closed_memory_bounded_others_served(processes):
    # Given daphne, an attacker's completed job with a 120 KB snapshot, and another user's job
    port = processes.start_daphne()
    attacker, other = make_user(), make_user()
    target = _big_completed_job(attacker)
    flood_url = f"ws://127.0.0.1:{port}/ws/jobs/{target.pk}/?token={token_for(attacker)}"
    theirs = services.job_create(project=make_project(owner=other), job_type="image_generation", params={})
    probe_url = f"ws://127.0.0.1:{port}/ws/jobs/{theirs.pk}/?token={token_for(other)}"
    asyncio.run(connect_cycles(probe_url, cycles=20, parallel=2))  # warm up
    rss_before = psutil.Process(processes.procs["daphne"].pid).memory_info().rss

    async def scenario() -> tuple[list[float], list[bool]]:
        probing = asyncio.ensure_future(_probe_connects(probe_url, time.monotonic() + 8))
        # When three clients each send 3,000 refreshes (360 MB of snapshots asked for) and read nothing
        flooders = await asyncio.gather(*(_flood_refresh_never_read(flood_url, 3000) for _ in range(3)))
        latencies = await probing
        closed = await asyncio.gather(*(_closed_by_server(s, 20) for s in flooders))
        return latencies, list(closed)

    with RssSampler(processes.procs["daphne"].pid) as rss:
        latencies, closed = asyncio.run(asyncio.wait_for(scenario(), 90))

    # Then every flooder was closed, daphne grew by less than the bound, and the other user's every connect
    # got its snapshot within 1 s throughout
    print(f"daphne RSS {rss_before / 2**20:.0f} MiB, peak {rss.peak / 2**20:.0f} MiB; "
          f"probe connects {len(latencies)}, slowest {max(latencies):.3f} s")
    assert closed == [True, True, True]
    assert rss.peak - rss_before < FLOOD_RSS_GROWTH_LIMIT, (rss_before, rss.peak)
    assert latencies and max(latencies) < 1.0, latencies
    assert processes.procs["daphne"].poll() is None


def test_ws_abuse__slow_reader_within_the_message_budget_is_closed_at_the_byte_cap(processes):
    # Given daphne with a 2 s stall allowance (the keep-alive pings far later), and a 120 KB snapshot
    port = processes.start_daphne(args=["--ping-interval", "120"], WS_SEND_STALL_S="2")
    owner = make_user()
    target = _big_completed_job(owner)
    url = f"ws://127.0.0.1:{port}/ws/jobs/{target.pk}/?token={token_for(owner)}"
    rss_before = psutil.Process(processes.procs["daphne"].pid).memory_info().rss

    async def scenario() -> bool:
        # When a client asks for a refresh every 0.4 s (within its budget) and never reads
        socket = await connect(url, max_size=None, max_queue=1)
        try:
            for _ in range(100):
                await socket.send("refresh")
                await asyncio.sleep(0.4)
                if "slow reader" in processes.log("daphne"):
                    break
        except ConnectionClosed:
            pass
        return await _closed_by_server(socket, 20)

    with RssSampler(processes.procs["daphne"].pid) as rss:
        closed = asyncio.run(asyncio.wait_for(scenario(), 90))

    # Then daphne closed it as a slow reader (4413), with at most the cap (1 MiB) and a frame unsent
    assert closed
    assert "slow reader" in processes.log("daphne")
    assert rss.peak - rss_before < FLOOD_RSS_GROWTH_LIMIT, (rss_before, rss.peak)


def test_ws_abuse__peer_that_sends_but_never_reads_is_dropped_by_the_keepalive(processes):
    # Given daphne pinging every second and waiting 2 s for the pong
    port = processes.start_daphne(args=["--ping-interval", "1", "--ping-timeout", "2"])
    owner = make_user()
    job = services.job_create(project=make_project(owner=owner), job_type="image_generation", params={})
    url = f"ws://127.0.0.1:{port}/ws/jobs/{job.pk}/?token={token_for(owner)}"

    async def scenario() -> float | None:
        # When a client sends a ping message every 0.3 s (within its budget) and reads nothing, not even
        # the protocol's pings (its library stops reading once one message waits)
        socket = await connect(url, max_size=None, max_queue=1, ping_interval=None)
        started = time.monotonic()
        try:
            while time.monotonic() - started < 20:
                await socket.send("ping")
                await asyncio.sleep(0.3)
        except ConnectionClosed:
            return time.monotonic() - started
        return None

    # Then daphne drops it within a few seconds, though it kept sending
    dropped_after = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert dropped_after is not None and dropped_after < 10, dropped_after
