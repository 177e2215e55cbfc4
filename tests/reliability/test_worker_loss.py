"""Lost workers: a worker SIGKILLed mid-job 20 times across a batch, and a poison job that kills every worker.

Jobs are image jobs whose scenes are drawn by the fake Stable Diffusion backend with a delay, so a stage is
reliably "in the middle" when the test strikes; beat runs the reaper every second with short limits.
"""
from __future__ import annotations

import re

import psutil
import pytest

from jobs import leases, services, states
from jobs.models import GenerationJob, JobEvent
from tests.factories import make_project, make_user
from tests.processes import ALL_QUEUES, kill_stage_holder, wait_until

from .conftest import LIMITS, TINY_IMAGES, Watchers, assert_settled, owned_jobs, script, token_for
from .scenario import assert_all_completed, wait_finished

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

KILLS = 20
STANDBYS = 3  # workers booting ahead: a boot takes longer than reaching the middle of a stage


def running_stage_in(worker_pid: int, job_ids: list[str]) -> tuple[str, int] | None:
    """(job id, attempt) of a job whose images stage runs in this worker's pool right now, past its start."""
    try:
        pool = {child.pid for child in psutil.Process(worker_pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return None
    rows = GenerationJob.objects.filter(pk__in=job_ids, status=states.PROCESSING, progress__gt=0)
    for job_id, attempt in rows.values_list("pk", "attempts"):
        for lease in leases.stage_leases(job_id, attempt, "images"):  # its scene tasks' leases
            if lease.state == leases.RUNNING and lease.pid in pool:
                return str(job_id), attempt
    return None


def start_standby(processes, name: str, env: dict[str, str]) -> None:
    """Boot a worker that consumes only a queue of its own (empty) until `activate`: the next one to strike."""
    processes.start_worker(name, queues=f"standby-{name}", concurrency=2, wait=False, **env)


def activate(processes, name: str) -> None:
    """Make a booted standby worker consume every job queue (a remote-control add_consumer, as an operator would)."""
    from config.celery import app

    processes.wait_ready(name)
    node = wait_until(lambda: re.search(r"(\S+@\S+) ready\.", processes.log(name)), 30,
                      message=f"{name} to log that it is ready").group(1)
    for queue in ALL_QUEUES.split(","):
        # Asked again until the node answers (adding a queue twice is a no-op): a node that has just logged
        # "ready" may not be subscribed to the broadcast yet (Redis fanout is pub/sub: what is sent before is
        # lost), and a loaded machine answers late (CI once got no reply in 10 s).
        def added(queue=queue):
            replies = app.control.add_consumer(queue, destination=[node], reply=True, timeout=5)
            return replies and "ok" in replies[0][node]

        wait_until(added, 60, interval=0, message=f"{node} to add a consumer for {queue}")
    # A blocked BRPOP only sees the added queues when it returns (after up to a second): a no-op task on the
    # standby queue returns it now.
    app.send_task("celery.accumulate", args=[0], queue=f"standby-{name}")


def test_worker_loss__20_sigkills_mid_job_every_job_completes(processes, periodic_tasks, backend):
    # Given a batch of jobs, watched over websockets, and a worker that may lose each job many times
    # A killed worker takes the two jobs its pool held out of play until their leases go stale, so how soon
    # that is noticed sets the pace of the kills: heartbeats twice a second, stale after 2.5 s.
    env = {**LIMITS, "JOBS_HEARTBEAT_INTERVAL_S": "0.5", "JOBS_STALE_AFTER_S": "2.5", "JOBS_MAX_ATTEMPTS": "100",
           "JOBS_QUEUED_REDISPATCH_AFTER_S": "4", "SD_API_URL": backend.url}
    port = processes.start_daphne(wait=False)
    processes.start_beat(**env)
    names = [f"worker-{n}" for n in range(KILLS)] + ["worker-last"]
    for name in names[:STANDBYS]:
        start_standby(processes, name, env)
    processes.wait_ready("daphne")
    jobs, token = owned_jobs(tuple(f"Kill [slow:0.4] scene {n}." for n in range(4)), count=6)
    job_ids = [str(job.pk) for job in jobs]
    watchers = Watchers.for_jobs(port, jobs, token, timeout=200).start()

    # When the worker is SIGKILLed (process group: main process and pool) in the middle of a job, 20 times.
    # Only one worker consumes at a time; the next ones boot meanwhile but take jobs only once activated.
    killed: list[tuple[str, int]] = []
    for n in range(KILLS):
        activate(processes, names[n])
        worker = processes.procs[names[n]]
        if n + STANDBYS < len(names):
            start_standby(processes, names[n + STANDBYS], env)
        victim = wait_until(lambda: running_stage_in(worker.pid, job_ids), 60, interval=0.05,
                            message=f"a job running mid-stage in worker {n}")
        processes.kill(names[n])
        killed.append(victim)
    activate(processes, "worker-last")
    wait_finished(job_ids, 120, message="every job to finish after the kills")

    # Then every job completed (none hit the maximum), each killed attempt was replaced by a new one
    done = assert_settled(job_ids, watchers)
    assert_all_completed(done)
    for job_id, attempt in killed:
        assert done[job_id].attempts > attempt, (job_id, attempt, done[job_id].attempts)
    assert sum(job.lost_count for job in done.values()) >= len(set(killed))
    for job_id in job_ids:
        statuses = [s for s in JobEvent.objects.filter(job_id=job_id, kind="status").order_by("seq")
                    .values_list("status", flat=True)]
        assert statuses[-1] == states.COMPLETED and statuses.count(states.COMPLETED) == 1, statuses


def test_worker_loss__poison_job_fails_after_max_attempts_others_unharmed(processes, periodic_tasks, backend):
    # Given a poison job (its images stage kills the pool process running it) among ordinary jobs
    env = {**LIMITS, "JOBS_MAX_ATTEMPTS": "3", "SD_API_URL": backend.url}
    port = processes.start_daphne(wait=False)
    worker = processes.start_worker(concurrency=2, **env)
    processes.wait_ready()
    user = make_user()
    poison = services.job_create(project=make_project(owner=user, script=script("Poison [slow:30] scene.")),
                                 job_type="image_generation", params=TINY_IMAGES)
    healthy_project = make_project(owner=user, script=script(*(f"Calm [slow:0.3] scene {n}." for n in range(3))))
    healthy = [services.job_create(project=healthy_project, job_type="image_generation", params=TINY_IMAGES)
               for _ in range(3)]
    watchers = Watchers.for_jobs(port, [poison, *healthy], token_for(user), timeout=90).start()

    # When every attempt's images stage takes its pool process down (as an OOM or a segfault would),
    # the same way tests/e2e/test_worker_recovery.py does: kill the lease holder once the prompt arrived
    killed: set[int] = set()

    def kill_poison_holder() -> bool:
        return kill_stage_holder(poison.pk, "images", killed, lambda: backend.count("Poison") > len(killed))

    wait_until(kill_poison_holder, 60, interval=0.1, message="the poison job to be failed")
    wait_until(lambda: not GenerationJob.objects.filter(pk__in=[j.pk for j in healthy])
               .exclude(status__in=states.TERMINAL).exists(), 60, message="the healthy jobs to finish")

    # Then the poison job failed after the maximum, and the others completed on their first attempt
    done = assert_settled([poison.pk, *(j.pk for j in healthy)], watchers)
    failed = done[str(poison.pk)]
    assert (failed.status, failed.error_message, len(killed)) == (states.FAILED, "worker lost 3 times", 3)
    for job in healthy:
        ok = done[str(job.pk)]
        assert (ok.status, ok.attempts, ok.lost_count) == (states.COMPLETED, 1, 0), (ok.status, ok.error_message)
    assert worker.poll() is None, "the worker's main process survived its pool processes' deaths"
