"""Redis Sentinel failover: the longest time a watching client receives nothing while the master is replaced.

A sentinel set of its own (tests/redis_ha.py: a master, a replica, three sentinels, down-after 1 s), a
daphne, a worker and the fake image backend (tests/e2e/fake_backend.py), all configured only with
REDIS_SENTINELS / REDIS_SENTINEL_MASTER / REDIS_SENTINEL_PASSWORD. Each round starts image jobs whose scenes
take SCENE_S each (a push every ~SCENE_S per job), watched by websocket and SSE clients (tests/push_clients.py);
once the pushes flow, the master is SIGKILLed and the jobs run to the end.

- `failover_push_gap_s`: the longest silence a client had from the kill to its job's final status
  (target ≤ 10 s with down-after 1 s), over the clients whose job was being pushed in the stretch before
  the kill. Since each scene is a task of its own, the two jobs' scenes share one FIFO queue: the second
  job's watchers hear nothing until the first job's scenes are done, failover or not (their silence would
  measure the queue, not the failover; they are counted in `failover_clients_queued`, and
  `failover_push_gap_all_clients_s` is the longest silence over every client, queued ones included);
- baseline `failover_steady_gap_s`: the longest silence of the same clients over the 3 s stretch before
  the kill (the pushes' own cadence);
- `failover_master_s`: kill -> the sentinels name the new master; `failover_first_push_s`: kill -> the
  first push received (median over clients); each round's figures under `failover_rounds`.
The killed server rejoins as a replica before the next round.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

from . import common

SCENE_S = 0.3
TINY_IMAGES = {"width": 64, "height": 64}


def _round(ha: Any, port: int, token: str, project_id: str, jobs: int, clients: int) -> dict[str, Any]:
    import httpx

    from jobs import states
    from jobs.models import GenerationJob
    from tests.processes import wait_until
    from tests.push_clients import PushClients

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Token {token}"},
                      timeout=20) as api:
        created = [api.post("/api/jobs/", json={"project_id": project_id, "job_type": "image_generation",
                                                "params": TINY_IMAGES}) for _ in range(jobs)]
    job_ids = [r.json()["id"] for r in created if r.status_code == 201]
    assert len(job_ids) == jobs, [r.text for r in created]
    watchers = PushClients(port, token, job_ids * clients, timeout=180).start()
    wait_until(lambda: GenerationJob.objects.filter(pk__in=job_ids, status=states.PROCESSING,
                                                    progress__gt=0).count() == jobs, 60, message="jobs running")
    time.sleep(2.0)  # past the hand-over from the parse stage to the image stage
    steady_from = time.monotonic()
    time.sleep(3.0)  # pushes flowing: the stretch the baseline gap is measured over
    old, killed_at = ha.kill_master()
    new = ha.wait_failover(old)
    master_s = time.monotonic() - killed_at
    wait_until(lambda: not GenerationJob.objects.filter(pk__in=job_ids).exclude(status__in=states.TERMINAL).exists(),
               150, interval=0.5, message="jobs to finish after the failover")
    watchers.join()
    statuses = dict(GenerationJob.objects.filter(pk__in=job_ids).values_list("pk", "status"))
    ha.rejoin(old)
    ha.wait_settled(new)
    pushed = [w for w in watchers.watches if any(steady_from <= at <= killed_at for at, _ in w.arrivals)]
    firsts = [w.first_after(killed_at) for w in pushed]
    return {
        "gap_s": round(max(w.longest_silence(killed_at) for w in pushed), 2),
        "steady_gap_s": round(max(w.longest_silence(steady_from, killed_at) for w in pushed), 2),
        "clients_queued": len(watchers.watches) - len(pushed),
        "gap_all_clients_s": round(max(w.longest_silence(killed_at) for w in watchers.watches), 2),
        "master_s": round(master_s, 2),
        "first_push_s": round(statistics.median(f for f in firsts if f is not None), 2),
        "clients_without_final": sum(w.final is None for w in watchers.watches),
        "jobs_not_completed": sum(status != states.COMPLETED for status in statuses.values()),
    }


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    from tests.e2e.fake_backend import FakeBackend, script
    from tests.redis_ha import SentinelSet

    rounds, jobs, clients, scenes = (1, 2, 2, 40) if quick else (3, 2, 10, 48)  # a script has at most 50 scenes
    user, token = common.make_user_with_token()
    project = common.make_project(user)
    project.script = script(*(f"Harbour [slow:{SCENE_S}] scene {n}." for n in range(scenes)))
    project.save(update_fields=["script"])
    backend = FakeBackend().start()
    ha = SentinelSet(env.workdir / "sentinel").start()
    group = common.process_group()
    try:
        process_env = {**ha.env(), "SD_API_URL": backend.url, "JOBS_CREATE_RATE": ""}
        port = group.start_daphne("failover-daphne", wait=False, **common.WEB_ENV, **process_env)
        group.start_worker("failover-worker", concurrency=jobs, wait=False, **process_env)
        group.wait_ready()
        results = [_round(ha, port, token, str(project.pk), jobs, clients) for _ in range(rounds)]
    finally:
        group.stop_all()
        ha.stop()
        backend.stop()
    return {
        "failover_push_gap_s": max(r["gap_s"] for r in results),
        "failover_steady_gap_s": max(r["steady_gap_s"] for r in results),
        "failover_master_s": max(r["master_s"] for r in results),
        "failover_first_push_s": max(r["first_push_s"] for r in results),
        "failover_clients_queued": max(r["clients_queued"] for r in results),
        "failover_push_gap_all_clients_s": max(r["gap_all_clients_s"] for r in results),
        "failover_clients_without_final": sum(r["clients_without_final"] for r in results),
        "failover_jobs_not_completed": sum(r["jobs_not_completed"] for r in results),
        "failover_rounds": results,
    }
