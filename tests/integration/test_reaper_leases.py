"""Stage leases in the real Redis: what a redelivered or duplicate task finds when it starts."""
from __future__ import annotations

import subprocess
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


def test_leases__same_message_again_while_running_means_its_worker_was_lost(job_id):
    leases.claim_stage(job_id, 1, "parse", "task-a", ttl_s=30)

    assert leases.claim_stage(job_id, 1, "parse", "task-a", ttl_s=30)[0] == leases.LOST


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
