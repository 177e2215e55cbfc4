"""Stage leases in the real Redis: what a redelivered or duplicate task finds when it starts."""
from __future__ import annotations

import subprocess
import threading
import uuid

import pytest

from jobs import leases


@pytest.fixture
def job_id() -> str:
    return str(uuid.uuid4())


def test_leases__first_claim_wins_and_a_live_holder_blocks_a_duplicate(job_id):
    assert leases.claim_stage(job_id, 1, "images", "task-a", ttl_s=30)[0] == leases.CLAIMED

    outcome, holder = leases.claim_stage(job_id, 1, "images", "task-b", ttl_s=30)

    assert outcome == leases.HELD and holder.task_id == "task-a"


def _put(job_id: str, stage: str, task_id: str, pid: int, host: str, until: float) -> leases.Lease:
    lease = leases.Lease(stage, task_id, pid, host, leases.RUNNING, until)
    leases.client().hset(leases._stages_key(job_id, 1), stage, lease.raw)
    return lease


def test_leases__same_message_again_after_its_process_died_means_its_worker_was_lost(job_id):
    dead = subprocess.Popen(["true"])
    dead.wait()
    _put(job_id, "parse", "task-a", dead.pid, leases.socket.gethostname(), leases.time.time() + 30)

    assert leases.claim_stage(job_id, 1, "parse", "task-a", ttl_s=30)[0] == leases.LOST


def test_leases__same_message_again_while_its_process_runs_is_held(job_id):
    # RabbitMQ requeues a worker's unacknowledged messages when its connection drops, while its pool
    # process still runs the task: that copy must not start a second attempt.
    leases.claim_stage(job_id, 1, "parse", "task-a", ttl_s=30)

    assert leases.claim_stage(job_id, 1, "parse", "task-a", ttl_s=30)[0] == leases.HELD


def test_leases__same_message_again_from_another_host_is_lost_unless_its_lease_is_refreshed(job_id):
    seen = _put(job_id, "images", "task-a", 4242, "other-host", leases.time.time() + 30)

    started = leases.time.monotonic()
    assert leases.claim_stage(job_id, 1, "images", "task-a", ttl_s=30, refresh_wait_s=0.6)[0] == leases.LOST
    assert leases.time.monotonic() - started >= 0.6

    leases.client().hset(leases._stages_key(job_id, 1), "images", seen.raw)
    refresher = threading.Timer(0.2, _put, (job_id, "images", "task-a", 4242, "other-host", seen.until + 10))
    refresher.start()
    try:
        outcome, _ = leases.claim_stage(job_id, 1, "images", "task-a", ttl_s=30, refresh_wait_s=5)
    finally:
        refresher.join()
    assert outcome == leases.HELD


def test_leases__holder_process_that_died_counts_as_lost(job_id):
    dead = subprocess.Popen(["true"])
    dead.wait()
    lease = leases.Lease("audio", "task-a", dead.pid, leases.socket.gethostname(), leases.RUNNING,
                         leases.time.time() + 30)
    leases.client().hset(leases._stages_key(job_id, 1), "audio", lease.raw)

    assert leases.claim_stage(job_id, 1, "audio", "task-b", ttl_s=30)[0] == leases.LOST


def test_leases__finished_stage_and_own_retry(job_id):
    leases.set_stage(job_id, 2, "video", "task-a", leases.DONE, ttl_s=60)
    leases.set_stage(job_id, 2, "images", "task-r", leases.RETRYING, ttl_s=60)

    assert leases.claim_stage(job_id, 2, "video", "task-a", ttl_s=30)[0] == leases.FINISHED
    assert leases.claim_stage(job_id, 2, "images", "task-r", ttl_s=30)[0] == leases.CLAIMED  # the retry resumes
    assert leases.claim_stage(job_id, 3, "video", "task-a", ttl_s=30)[0] == leases.CLAIMED  # other attempt


def test_leases__expired_holder_is_not_live(job_id):
    leases.set_stage(job_id, 1, "images", "task-a", leases.RUNNING, ttl_s=-1)

    assert leases.live_holders(job_id, 1) == []
    assert leases.claim_stage(job_id, 1, "images", "task-b", ttl_s=30)[0] == leases.LOST
