"""The steps a fault scenario takes around its fault: start the stack, create jobs through the API, wait
until they run, wait until they all finish, and check what each push client saw.

The fault itself (a Redis restart, a failover, killed connections or workers) is the test's own; these
steps were copied from one scenario into the next before they lived here.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from jobs import states
from jobs.models import GenerationJob
from tests.processes import wait_until

from .conftest import TINY_IMAGES


def start_stack(processes: Any, env: dict[str, str]) -> int:
    """daphne, a two-process worker and beat, all with `env`; returns daphne's port once all are ready."""
    port = processes.start_daphne(wait=False, **env)
    processes.start_worker(concurrency=2, wait=False, **env)
    processes.start_beat(**env)
    processes.wait_ready()
    return port


def create_jobs(api: httpx.Client, project_id: str, count: int) -> list[str]:
    """`count` image jobs of one project through POST /api/jobs/ (each must be a 201); their ids."""
    created = [api.post("/api/jobs/", json={"project_id": project_id, "job_type": "image_generation",
                                            "params": TINY_IMAGES}) for _ in range(count)]
    assert [r.status_code for r in created] == [201] * count, [r.text for r in created]
    return [r.json()["id"] for r in created]


def api_client(port: int, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Token {token}"}, timeout=20)


def wait_running(job_ids: Iterable[Any], *, count: int = 1, exactly: bool = False, message: str) -> None:
    """Until `count` of the jobs (`exactly` that many) are processing with some progress: the fault then
    hits work in flight, not a queue."""
    def running() -> bool:
        n = GenerationJob.objects.filter(pk__in=list(job_ids), status=states.PROCESSING, progress__gt=0).count()
        return n == count if exactly else n >= count

    wait_until(running, 60, message=message)


def wait_finished(job_ids: Iterable[Any], timeout: float, *, message: str, interval: float = 0.5) -> None:
    """Until none of the jobs is unfinished."""
    ids = list(job_ids)
    wait_until(lambda: not GenerationJob.objects.filter(pk__in=ids).exclude(status__in=states.TERMINAL).exists(),
               timeout, interval=interval, message=message)


def assert_all_completed(done: dict[str, GenerationJob]) -> None:
    assert {job.status for job in done.values()} == {states.COMPLETED}, {
        j: (job.status, job.error_message) for j, job in done.items()}


def assert_pushes_complete(watches: Iterable[Any], done: dict[str, GenerationJob], *, status: bool = False) -> None:
    """Every push client (tests/push_clients.py) got its job's final event (`status`: with the final status
    too) and every seq from its first contact to that one."""
    for watch in watches:
        job = done[watch.job_id]
        final = None if watch.final is None else ((watch.final["status"], watch.final["seq"]) if status
                                                  else watch.final["seq"])
        assert final == ((job.status, job.seq) if status else job.seq), (watch.kind, watch.job_id, watch.errors[-3:])
        assert set(range(min(watch.seqs()), job.seq + 1)) <= watch.seqs(), (watch.kind, "missed seqs")
