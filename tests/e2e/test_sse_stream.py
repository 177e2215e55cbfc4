"""Server-Sent Events against a real daphne (and real Celery workers): /api/jobs/{id}/stream/ and friends."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import psutil
import pytest
from django.db import connection

from jobs import services, states
from tests.e2e.test_ws_stream import SMALL_FULL_VIDEO, TEST_TASKS, new_job, recorded, run_steps_task, shape

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def parse_events(lines: list[str]) -> list[dict[str, Any]]:
    """SSE lines (without their newlines) as events {"id", "event", "data"}; comments as {"comment"}."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if current:
                found.append(current)
            current = {}
        elif line.startswith(":"):
            found.append({"comment": line[1:].strip()})
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            current[field] = json.loads(value) if field == "data" else value
    return found


async def read_stream(url: str, token: str, *, timeout: float, headers: dict[str, str] | None = None,
                      stop: Any = None) -> tuple[list[dict[str, Any]], bool]:
    """The events of one stream until the server ends it (True) or `stop(events)` says so (False)."""
    lines: list[str] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout)) as client:
        async with client.stream("GET", url, headers={"Authorization": f"Token {token}", "Accept": "text/event-stream",
                                                        **(headers or {})}) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in asyncio_timeout_lines(response, timeout):
                lines.append(line)
                if line == "" and stop is not None and stop(parse_events(lines)):
                    return parse_events(lines), False
    return parse_events(lines), True


async def asyncio_timeout_lines(response: httpx.Response, timeout: float):
    deadline = time.monotonic() + timeout
    iterator = response.aiter_lines().__aiter__()
    while True:
        try:
            yield await asyncio.wait_for(iterator.__anext__(), max(0.1, deadline - time.monotonic()))
        except StopAsyncIteration:
            return


def messages(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The status and artifact messages (both numbered job events) in the order they came."""
    return [event["data"] for event in found if event.get("event") in ("status", "artifact")]


def stream_url(port: int, job: Any) -> str:
    return f"http://127.0.0.1:{port}/api/jobs/{job.pk}/stream/"


def test_sse_stream__full_video_job_streamed_to_completion(processes) -> None:
    # given a queued full video job and a daphne; the worker starts once the client watches
    port = processes.start_daphne()
    job, token = new_job("full_video", **SMALL_FULL_VIDEO)
    started = False

    def start_worker_once(found: list[dict[str, Any]]) -> bool:
        nonlocal started
        if not started and messages(found):
            started = True
            threading.Thread(target=processes.start_worker, kwargs={"concurrency": 2}, daemon=True).start()
        return False

    # when the stream is read until the server ends it
    found, ended = asyncio.run(read_stream(stream_url(port, job), token, timeout=150, stop=start_worker_once))

    # then it held the snapshot and every recorded event once, in order, ids = seqs, and ended after `completed`
    assert ended
    numbered = [event for event in found if event.get("event") in ("status", "artifact")]
    assert [int(event["id"]) for event in numbered] == [m["seq"] for m in messages(found)]
    assert {m["type"] for m in messages(found)} == {"status", "artifact"}
    snapshot, *live = messages(found)
    assert (snapshot["status"], snapshot["seq"]) == ("queued", 1)
    assert shape(live) == recorded(job, after_seq=1)
    final = live[-1]
    assert final["status"] == "completed" and "video" in {a["kind"] for a in final["result"]["artifacts"]}
    progress = [m["progress"] for m in live if m["type"] == "status"]
    assert progress == sorted(progress) and any(0 < p < 100 for p in progress)


def test_sse_stream__last_event_id_resume_gets_exactly_the_missed_events(processes) -> None:
    # given a job that reports progress for a few seconds, watched until five live events arrived
    port = processes.start_daphne(wait=False)
    processes.start_worker(queues="maintenance", concurrency=1, extra_args=TEST_TASKS, wait=False)
    processes.wait_ready()
    job, token = new_job()
    url = stream_url(port, job)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        def kick_off_then_stop(found: list[dict[str, Any]]) -> bool:
            if len(messages(found)) == 1:
                run_steps_task(job, steps=60, pause_s=0.1, last_progress=90.0)
            return len(messages(found)) >= 6

        before, ended = await read_stream(url, token, timeout=60, stop=kick_off_then_stop)
        assert not ended and messages(before)[-1]["status"] == "processing"
        await asyncio.sleep(1.5)  # events the client misses
        last = messages(before)[-1]["seq"]
        # when it reconnects with Last-Event-ID (EventSource's way) and, once more, with ?after_seq=
        by_header, _ = await read_stream(url, token, timeout=60, headers={"Last-Event-ID": str(last)})
        by_query, _ = await read_stream(f"{url}?after_seq={last}", token, timeout=60)
        return messages(before), messages(by_header), messages(by_query)

    before, after, by_query = asyncio.run(scenario())

    # then each got every event after that seq exactly once, in order, up to `completed`
    last = before[-1]["seq"]
    assert shape(after) == recorded(job, after_seq=last)
    assert after[-1]["status"] == "completed" and after[0]["seq"] == last + 1
    assert shape(by_query) == recorded(job, after_seq=last)


def test_sse_stream__resume_while_events_pour_in_has_no_gap_or_duplicate_at_the_seam(processes) -> None:
    # given a job whose progress is being recorded as fast as the database allows
    port = processes.start_daphne()
    job, token = new_job()
    services.job_start(job_id=job.pk, worker="test")
    written = threading.Event()

    def produce() -> None:
        try:
            for step in range(1, 301):
                services.job_report_progress(job_id=job.pk, progress=step / 4, stage=f"Step {step}", attempt=1)
                if step == 60:
                    written.set()
            services.job_complete(job_id=job.pk, result={"artifacts": []}, attempt=1)
        finally:
            connection.close()

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        assert written.wait(30)
        # when a client resumes from seq 10 while events keep coming
        found, ended = asyncio.run(read_stream(stream_url(port, job), token, timeout=60,
                                               headers={"Last-Event-ID": "10"}))
    finally:
        producer.join(60)

    # then it gets 11..N once each, in order, and the stream ends after `completed`
    assert ended
    got = messages(found)
    assert shape(got) == recorded(job, after_seq=10)
    assert got[-1]["status"] == states.COMPLETED


def test_sse_stream__keepalive_comment_while_nothing_happens(processes) -> None:
    # given a daphne configured to send keep-alive comments every 0.5 s and a job that does not move
    port = processes.start_daphne(SSE_KEEPALIVE_S="0.5")
    job, token = new_job()

    # when a client watches for a few seconds
    found, _ = asyncio.run(read_stream(stream_url(port, job), token, timeout=30,
                                       stop=lambda seen: sum("comment" in e for e in seen) >= 3))

    # then after the snapshot only comments arrived
    assert [e["data"]["seq"] for e in found if e.get("event") == "status"] == [1]
    assert [e["comment"] for e in found if "comment" in e][:3] == ["keep-alive"] * 3


def start_job(job: Any) -> None:
    """job_start from a helper thread, closing the thread's database connection afterwards."""
    try:
        services.job_start(job_id=job.pk, worker="test")
    finally:
        connection.close()


async def _open_stream(port: int, path: str, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n"
                 f"Accept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def _read_until(reader: asyncio.StreamReader, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        chunk = await asyncio.wait_for(reader.read(65536), max(0.1, deadline - time.monotonic()))
        if not chunk:
            raise AssertionError(f"stream closed early: {seen[-300:]!r}")
        seen += chunk
    return seen


def test_sse_stream__500_concurrent_streams_hold_no_thread_each(processes) -> None:
    # given one web process (allowing one user that many streams) and a queued job
    port = processes.start_daphne(SSE_STREAMS_PER_USER="500")
    daphne = psutil.Process(processes.procs["daphne"].pid)
    job, token = new_job()
    path = f"/api/jobs/{job.pk}/stream/"

    def daphne_db_connections() -> int:
        port = int(connection.settings_dict.get("PORT") or 5432)
        return sum(1 for c in daphne.net_connections(kind="tcp") if c.raddr and c.raddr.port == port)

    async def scenario() -> tuple[int, int, int]:
        # when 500 clients open a stream each and all got their snapshot
        streams = []
        for batch in range(10):
            opened = await asyncio.gather(*(_open_stream(port, path, token) for _ in range(50)))
            await asyncio.gather(*(_read_until(reader, b'"seq": 1', 60) for reader, _ in opened))
            streams.extend(opened)
        threads = daphne.num_threads()
        sessions = daphne_db_connections()
        # and one event is recorded while they are open
        await asyncio.to_thread(start_job, job)
        received = await asyncio.gather(*(_read_until(reader, b'"seq": 2', 60) for reader, _ in streams))
        for _, writer in streams:
            writer.close()
        return threads, sessions, len(received)

    threads, sessions, received = asyncio.run(scenario())

    # then every stream got the live event, and the process ran on a few threads and at most one
    # database connection (its shared sync thread's), not one per stream
    assert received == 500
    assert threads < 50, f"daphne had {threads} threads with 500 streams open"
    if connection.vendor == "postgresql":
        assert sessions <= 1, f"{sessions} database sessions with 500 streams open"


def test_sse_stream__project_stream_follows_every_job_of_the_project(processes) -> None:
    # given a project with two jobs, watched through its stream
    port = processes.start_daphne()
    first, token = new_job()
    second = services.job_create(project=first.project, job_type="image_generation")
    url = f"http://127.0.0.1:{port}/api/projects/{first.project_id}/stream/"
    third: list[Any] = []

    def act_once_both_snapshots_arrived(found: list[dict[str, Any]]) -> bool:
        seen = messages(found)
        if len(seen) == 2 and not third:
            # when both jobs move and a third job is created while the client watches
            def work() -> None:
                try:
                    services.job_start(job_id=first.pk, worker="test")
                    services.job_start(job_id=second.pk, worker="test")
                    services.job_report_progress(job_id=second.pk, progress=50, stage="Half", attempt=1)
                    third.append(services.job_create(project=first.project, job_type="image_generation"))
                    services.job_cancel(job_id=first.pk)
                finally:
                    connection.close()

            threading.Thread(target=work).start()
        return bool(third) and {(m["job_id"], m["seq"]) for m in seen} >= {
            (str(first.pk), 3), (str(second.pk), 3), (str(third[0].pk), 1)}

    found, ended = asyncio.run(read_stream(url, token, timeout=30, stop=act_once_both_snapshots_arrived))

    # then it got both snapshots, then each job's events once and in order, and stayed open
    assert not ended
    seen = messages(found)
    assert {(m["job_id"], m["seq"]) for m in seen[:2]} == {(str(first.pk), 1), (str(second.pk), 1)}
    for job in (first, second, third[0]):
        of_job = [m for m in seen if m["job_id"] == str(job.pk)]
        assert shape(of_job) == recorded(job, after_seq=0), job.pk
    assert [m["status"] for m in seen if m["job_id"] == str(first.pk)][-1] == "cancelled"


def test_sse_stream__streams_per_user_are_capped_and_a_closed_stream_frees_its_slot(processes) -> None:
    # given a web process allowing two streams per user, and a user watching a job twice
    port = processes.start_daphne(SSE_STREAMS_PER_USER="2")
    job, token = new_job()
    path = f"/api/jobs/{job.pk}/stream/"

    async def scenario() -> tuple[bytes, bytes]:
        streams = [await _open_stream(port, path, token) for _ in range(2)]
        for reader, _ in streams:
            await _read_until(reader, b'"seq": 1', 30)
        # when a third stream is asked for, and again after one of the two was closed
        reader, writer = await _open_stream(port, path, token)
        refused = await _read_until(reader, b"}", 30)
        writer.close()
        streams[0][1].close()
        deadline = time.monotonic() + 30
        while True:
            reader, writer = await _open_stream(port, path, token)
            answer = await _read_until(reader, b"}", 30)
            writer.close()
            if b" 200 " in answer.split(b"\r\n", 1)[0] or time.monotonic() > deadline:
                return refused, answer
            await asyncio.sleep(0.2)  # the server notices the disconnect on its next loop turn

    refused, answer = asyncio.run(scenario())

    # then the third is a 429 naming the limit, and the closed stream's slot is free again
    assert refused.startswith(b"HTTP/1.1 429") and b"2 streams open" in refused
    assert answer.startswith(b"HTTP/1.1 200") and b'"seq": 1' in answer


def test_sse_stream__ends_once_its_token_is_deleted(processes) -> None:
    # given a stream opened with a token, on a web process re-checking access every second
    port = processes.start_daphne(SSE_REAUTH_S="1", SSE_KEEPALIVE_S="0.5")
    job, token = new_job()
    deleted = threading.Event()

    def delete_token_after_snapshot(found: list[dict[str, Any]]) -> bool:
        if messages(found) and not deleted.is_set():
            deleted.set()
            # when the token is deleted while the stream is open
            threading.Thread(target=_delete_token, args=(token,)).start()
        return False

    found, ended = asyncio.run(read_stream(stream_url(port, job), token, timeout=30,
                                           stop=delete_token_after_snapshot))

    # then the server ends the stream, saying why, although the job is still queued
    assert ended
    assert {"comment": "access revoked"} in found


def _delete_token(key: str) -> None:
    from rest_framework.authtoken.models import Token

    try:
        Token.objects.filter(key=key).delete()
    finally:
        connection.close()
