"""A RabbitMQ node SIGKILLed while jobs run and clients watch: a three-node cluster of the test's own
(tests/rabbitmq_cluster.py; never the machine's node on 5672), the job queues quorum queues.

Every app process gets the `;` list of the three nodes (docs/OPERATIONS.md) and connects to the first, so
the job queues' leaders (declared by the worker, client-local) are on that node: killing it takes the
leaders and every app connection at once. The quorum queues elect new leaders among the other two, the
clients reconnect to the next node of their list, and RabbitMQ requeues what the dead connections held
unacknowledged; the stage leases make such a copy of a still-running task do nothing.
"""
from __future__ import annotations

import time

import httpx
import pytest

from jobs import queues as job_queues
from jobs import states
from jobs.models import GenerationJob, JobEvent
from tests import rabbitmq_cluster
from tests.factories import make_project, make_user
from tests.processes import artifacts_dir, free_port, wait_until
from tests.push_clients import PushClients

from .conftest import LIMITS, TINY_IMAGES, Watchers, assert_settled, script, token_for

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

JOBS = 4  # running or queued when the node dies
LATER_JOBS = 2  # created once the queues have their new leaders
SCENES = 6


@pytest.fixture(scope="module")
def cluster():
    if not rabbitmq_cluster.available():
        pytest.fail(f"rabbitmq-server is not installed ({rabbitmq_cluster.SERVER}): apt-get install rabbitmq-server")
    nodes = rabbitmq_cluster.RabbitCluster(artifacts_dir() / f"rabbitmq-cluster-{free_port()}").start()
    yield nodes
    nodes.stop()


def _create_jobs(api: httpx.Client, user, label: str, count: int) -> list[str]:
    """`count` jobs, each of a project of its own whose scene texts name it: a scene's image requests are
    counted per job by the fake backend (two of them at once would be one stage running twice)."""
    ids = []
    for n in range(count):
        project = make_project(owner=user, script=script(*(f"{label}{n} [slow:0.5] scene {s}." for s in range(SCENES))))
        response = api.post("/api/jobs/", json={"project_id": str(project.pk), "job_type": "image_generation",
                                                "params": TINY_IMAGES})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def _finished(job_ids: list[str]) -> bool:
    return not GenerationJob.objects.filter(pk__in=job_ids).exclude(status__in=states.TERMINAL).exists()


def test_rabbitmq_leader_node_sigkilled__jobs_finish_once_watchers_converge_new_jobs_complete(
        processes, periodic_tasks, backend, cluster):
    # Given daphne, a worker and beat on a three-node cluster (all connected to its first node), and jobs
    # running and queued, watched over websockets and SSE
    vhost = cluster.add_vhost(f"node-loss-{free_port()}")
    env = {**LIMITS, "CELERY_BROKER_URL": cluster.url(vhost), "JOBS_QUEUED_REDISPATCH_AFTER_S": "5",
           "JOBS_CREATE_RATE": "", "SD_API_URL": backend.url, "JOBS_MAX_ATTEMPTS": "5"}
    port = processes.start_daphne(wait=False, **env)
    processes.start_worker(concurrency=2, wait=False, **env)
    processes.start_beat(**env)
    processes.wait_ready()
    user = make_user()
    token = token_for(user)
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Token {token}"}, timeout=30)
    assert api.get("/healthz").json()["broker"] == "ok"
    job_ids = _create_jobs(api, user, "Before", JOBS)
    watchers = Watchers.for_jobs(port, GenerationJob.objects.filter(pk__in=job_ids), token, timeout=240).start()
    clients = PushClients(port, token, job_ids, timeout=240).start()
    wait_until(lambda: GenerationJob.objects.filter(pk__in=job_ids, status=states.PROCESSING, progress__gt=0).count() >= 2,
               60, message="two jobs to be running")
    job_queue_names = [name for name in job_queues.ALL if name != job_queues.MAINTENANCE]
    leaders = cluster.leaders(vhost, job_queue_names)
    assert leaders and all(row["type"] == "quorum" for row in cluster.queues(vhost) if row["name"] in leaders)
    victim = cluster.node(max(set(leaders.values()), key=list(leaders.values()).count))
    running = {str(pk) for pk in GenerationJob.objects.filter(pk__in=job_ids, status=states.PROCESSING).values_list("pk", flat=True)}

    # When the node leading the job queues is SIGKILLed
    killed_at = victim.kill()
    killed_wall = time.time()
    wait_until(lambda: victim.name not in cluster.leaders(vhost, list(leaders)).values()
               and set(cluster.leaders(vhost, list(leaders))) == set(leaders), 60, interval=0.25,
               message="the job queues to elect new leaders")
    elected_s = time.monotonic() - killed_at

    # Then every job that was running or queued finishes, and jobs created now complete too
    later_ids = _create_jobs(api, user, "After", LATER_JOBS)
    created_later_at = time.monotonic()
    later_clients = PushClients(port, token, later_ids, timeout=180).start()
    wait_until(lambda: _finished(job_ids), 180, interval=0.5, message="the jobs running at the kill to finish")
    before_done_s = time.monotonic() - killed_at
    wait_until(lambda: _finished(later_ids), 180, interval=0.5, message="the jobs created after the kill to finish")
    later_done_s = time.monotonic() - created_later_at
    healthz = api.get("/healthz").json()
    api.close()
    done = assert_settled(job_ids, watchers) | assert_settled(later_ids)
    assert {job.status for job in done.values()} == {states.COMPLETED}, {
        j: (job.status, job.attempts, job.error_message) for j, job in done.items()}
    # ... none of their stages ran twice at once (each scene's image requested by one process at a time)
    for label, count in (("Before", JOBS), ("After", LATER_JOBS)):
        for n in range(count):
            for s in range(SCENES):
                text = f"{label}{n} [slow:0.5] scene {s}."
                assert backend.peak_in_flight(text) == 1, (text, backend.count(text))
    # ... every client saw every seq and the final status, the processes rode it out, /healthz is ok
    for pushes in (clients, later_clients):
        pushes.join()
        for watch in pushes.watches:
            job = done[watch.job_id]
            assert watch.final is not None and (watch.final["status"], watch.final["seq"]) == (job.status, job.seq), (
                watch.kind, watch.job_id, watch.errors[-3:])
            first = min(m["seq"] for _, m in watch.arrivals)
            assert set(range(first, job.seq + 1)) <= watch.seqs(), (watch.kind, "missed seqs")
    assert all(processes.procs[name].poll() is None for name in ("daphne", "worker", "beat"))
    assert healthz["broker"] == "ok", healthz  # the failover list's next node answers

    # Report: leader election, the first push of an event committed after the kill, and completion times
    committed_after = {(str(j), seq) for j, seq in JobEvent.objects.filter(
        job_id__in=job_ids, created_at__gt=_aware(killed_wall)).values_list("job_id", "seq")}
    firsts = [at - killed_at for watch in clients.watches for at, m in watch.arrivals
              if at > killed_at and (watch.job_id, m["seq"]) in committed_after]
    # How long a client watching a job that was running at the kill heard nothing (until its final status)
    silences = [watch.longest_silence(killed_at) for watch in clients.watches if watch.job_id in running]
    report = {"leaders_before": leaders, "killed": victim.name, "elected_s": round(elected_s, 2),
              "first_push_after_kill_s": round(min(firsts), 2) if firsts else None,
              "longest_silence_of_running_jobs_watchers_s": round(max(silences), 2),
              "running_jobs_done_after_kill_s": round(before_done_s, 1),
              "new_jobs_done_s": round(later_done_s, 1),
              "attempts": sorted(job.attempts for job in done.values())}
    print(f"rabbitmq node loss: {report}")


def _aware(wall: float):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(wall, tz=timezone.utc)
