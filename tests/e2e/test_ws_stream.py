"""Job streams over real websockets: daphne + Celery worker processes + a `websockets` client with a token."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Awaitable, Callable

import pytest
from rest_framework.authtoken.models import Token
from websockets.asyncio.client import ClientConnection, connect

from jobs import services, states
from jobs.models import GenerationJob, JobEvent
from tests.factories import make_project, make_user
from tests.tasks_for_tests import TASK_NAME

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TEST_TASKS = ["-I", "tests.tasks_for_tests"]
SMALL_FULL_VIDEO = {"width": 320, "height": 180, "fps": 10}
SCRIPT = "# Scene 1\nA calm sea at dawn.\n\n# Scene 2\nThe boats come home.\n"


# --- helpers shared with test_ws_coalescing.py ----------------------------------------------------------

def token_for(user: Any) -> str:
    return Token.objects.create(user=user).key


def job_url(port: int, job: GenerationJob, token: str) -> str:
    return f"ws://127.0.0.1:{port}/ws/jobs/{job.pk}/?token={token}"


def new_job(job_type: str = "image_generation", **params: Any) -> tuple[GenerationJob, str]:
    """A queued job of a new user, and that user's token."""
    user = make_user()
    job = services.job_create(project=make_project(owner=user, script=SCRIPT), job_type=job_type, params=params)
    return job, token_for(user)


def run_steps_task(job: GenerationJob, *, steps: int, pause_s: float, last_progress: float) -> None:
    """Queue tests.tasks_for_tests on `maintenance`; the job's own stage tasks wait unconsumed on their queue."""
    from config.celery import app

    app.send_task(TASK_NAME, args=[str(job.pk), steps, pause_s, last_progress], queue="maintenance")


async def receive_json(socket: ClientConnection, deadline: float) -> dict[str, Any]:
    raw = await asyncio.wait_for(socket.recv(), max(0.1, deadline - time.monotonic()))
    return json.loads(raw)


async def read_until_terminal(socket: ClientConnection, deadline: float,
                              stop: Callable[[list[dict[str, Any]]], bool] | None = None) -> list[dict[str, Any]]:
    """Status and artifact messages until the job finishes (or `stop(messages)` says so); a waiting job's
    `queue` messages (its place in line, pushed whenever admission refreshes positions) are skipped."""
    messages: list[dict[str, Any]] = []
    while True:
        message = await receive_json(socket, deadline)
        if message["type"] == "queue":
            continue
        assert message["type"] in ("status", "artifact"), message
        messages.append(message)
        if message.get("status") in states.TERMINAL or (stop and stop(messages)):
            return messages


async def watch(url: str, *, timeout: float, after_snapshot: Callable[[], Awaitable[None]] | None = None
                ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Connect, take the snapshot, run `after_snapshot`, then read until the job finishes."""
    deadline = time.monotonic() + timeout
    async with connect(url, open_timeout=10) as socket:
        snapshot = await receive_json(socket, deadline)
        assert snapshot["type"] == "status"
        if after_snapshot is not None:
            await after_snapshot()
        if snapshot["status"] in states.TERMINAL:
            return snapshot, []
        return snapshot, await read_until_terminal(socket, deadline)


def assert_consecutive(snapshot: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(snapshot["seq"] + 1, snapshot["seq"] + 1 + len(seqs))), seqs


def recorded(job: GenerationJob, after_seq: int = 0) -> list[tuple[int, str, float | str]]:
    """(seq, status, progress) of each event; (seq, "artifact", name) of an artifact event."""
    return [(e.seq, "artifact", e.data["name"]) if e.kind == "artifact" else (e.seq, e.status, e.progress)
            for e in JobEvent.objects.filter(job=job, seq__gt=after_seq).order_by("seq")]


def shape(messages: list[dict[str, Any]]) -> list[tuple[int, str, float | str]]:
    return [(m["seq"], "artifact", m["name"]) if m["type"] == "artifact" else (m["seq"], m["status"], m["progress"])
            for m in messages]


# --- tests ---------------------------------------------------------------------------------------------

def test_ws_stream__full_video_job_from_snapshot_to_completed(processes) -> None:
    port = processes.start_daphne()
    job, token = new_job("full_video", **SMALL_FULL_VIDEO)

    async def start_worker() -> None:  # after the snapshot, so the client sees the whole run
        await asyncio.to_thread(processes.start_worker, concurrency=2)

    snapshot, messages = asyncio.run(watch(job_url(port, job, token), timeout=150, after_snapshot=start_worker))

    assert (snapshot["job_id"], snapshot["status"], snapshot["seq"], snapshot["progress"]) == (str(job.pk), "queued", 1, 0.0)
    assert_consecutive(snapshot, messages)
    status = [m for m in messages if m["type"] == "status"]
    progress = [m["progress"] for m in status]
    assert progress == sorted(progress), "progress never goes down within an attempt"
    assert any(0 < p < 100 for p in progress), progress
    assert {m["status"] for m in status[:-1]} == {"processing"}
    # each scene's image and narration was announced before the job completed (jobs/scenes.py)
    assert sorted((m["kind"], m["scene"]) for m in messages if m["type"] == "artifact") == [
        (kind, scene) for kind in ("audio", "image") for scene in (1, 2)]
    final = messages[-1]
    assert (final["status"], final["progress"], final["error_message"]) == ("completed", 100.0, None), final
    assert "video" in {a["kind"] for a in final["result"]["artifacts"]}
    assert final["result"] == GenerationJob.objects.get(pk=job.pk).result
    assert shape(messages) == recorded(job, after_seq=1), "every recorded event was pushed, in order"


def test_ws_stream__two_daphne_processes_receive_the_same_events(processes) -> None:
    ports = [processes.start_daphne("daphne-a", wait=False), processes.start_daphne("daphne-b", wait=False)]
    processes.start_worker(queues="maintenance", concurrency=1, extra_args=TEST_TASKS, wait=False)
    processes.wait_ready()
    job, token = new_job()
    both_connected = asyncio.Event()
    snapshots_seen = 0

    async def on_snapshot() -> None:
        nonlocal snapshots_seen
        snapshots_seen += 1
        if snapshots_seen == 2:  # start the work once both clients are watching
            run_steps_task(job, steps=30, pause_s=0.05, last_progress=80.0)
            both_connected.set()
        await asyncio.wait_for(both_connected.wait(), 20)

    async def both() -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        return await asyncio.gather(*(watch(job_url(port, job, token), timeout=60, after_snapshot=on_snapshot)
                                      for port in ports))

    (snap_a, seen_a), (snap_b, seen_b) = asyncio.run(both())

    assert snap_a == snap_b and snap_a["seq"] == 1
    assert seen_a == seen_b
    assert_consecutive(snap_a, seen_a)
    assert shape(seen_a) == recorded(job, after_seq=1)
    assert seen_a[-1]["status"] == "completed" and len(seen_a) >= 5


def test_ws_stream__disconnect_mid_job_then_resume_gets_exactly_the_missed_events(processes) -> None:
    port = processes.start_daphne(wait=False)
    processes.start_worker(queues="maintenance", concurrency=1, extra_args=TEST_TASKS, wait=False)
    processes.wait_ready()
    job, token = new_job()
    url = job_url(port, job, token)

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
        deadline = time.monotonic() + 60
        async with connect(url, open_timeout=10) as socket:
            first_snapshot = await receive_json(socket, deadline)
            run_steps_task(job, steps=60, pause_s=0.1, last_progress=90.0)
            # leave after a few live events, while the job is still running
            before = await read_until_terminal(socket, deadline, stop=lambda seen: len(seen) >= 5)
        assert before[-1]["status"] == "processing", "the job must still run when the client leaves"
        await asyncio.sleep(1.5)  # events the client misses
        async with connect(url, open_timeout=10) as socket:
            snapshot = await receive_json(socket, deadline)
            await socket.send(json.dumps({"type": "resume", "after_seq": before[-1]["seq"]}))
            after = await read_until_terminal(socket, deadline)
        return [first_snapshot, *before], snapshot, after

    before, second_snapshot, after = asyncio.run(scenario())

    last_seen = before[-1]["seq"]
    assert second_snapshot["seq"] > last_seen + 1, "events happened while the client was away"
    assert shape(after) == recorded(job, after_seq=last_seen), "exactly the missed events, then live, once each"
    assert after[-1]["status"] == "completed"
    assert shape(before[1:]) + shape(after) == recorded(job, after_seq=before[0]["seq"])
