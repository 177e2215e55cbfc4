"""Push at ten times the first round's load: 1,000 running jobs x 2 watchers, 1,000 progress updates/s in all.

The production path of bench/push.py (`job_report_progress` -> on_commit -> realtime.publish), reported
by REPORTERS forked processes of REPORTER_THREADS threads each (as many pool processes report at once;
one process could not commit 1,000 a second and publish 2,000 group messages besides), watched by 2,000 websockets over the web processes README
prescribes (common.WEB_PROCS, clients spread as a balancer would).

Baseline in the same run: the same jobs, watchers and updates, served by a plain consumer
(bench/plain_asgi.py) with channels-redis's default RedisChannelLayer on stock daphne, the reporters
publishing with that layer (`push10x_baseline_*`).
"""
from __future__ import annotations

from typing import Any

from . import common, push

JOBS, WATCHERS, RATE = 1000, 2, 1000.0
# 4 reporter processes x 8 threads: one reporter waits for each commit, so 4 serial ones offered only
# 4 / (commit time) reports a second (134/s at load 9-18); 32 concurrent ones offer the 1,000 whatever the
# commit time up to 32 ms (bench/push.py, _report_in_threads).
CLIENT_PROCS, REPORTERS, REPORTER_THREADS = 4, 4, 8
CORE_LAYER = "channels_redis.core.RedisChannelLayer"


def serve_and_watch(name: str, token: str, job_ids: list[str], start_seq: dict[str, int], duration: float,
                    rate: float, *, baseline: bool) -> dict[str, Any]:
    group = common.process_group()
    try:
        if baseline:
            ports = [group.start_daphne(f"{name}-{i}", app="bench.plain_asgi:application", plain=True,
                                        CHANNEL_LAYER_BACKEND=CORE_LAYER) for i in range(common.WEB_PROCS)]
        else:
            ports = [group.start_daphne(f"{name}-{i}", **common.WEB_ENV) for i in range(common.WEB_PROCS)]
        return push.watched_updates([f"ws://127.0.0.1:{port}" for port in ports], token, job_ids, start_seq,
                                    watchers=WATCHERS, rate=rate, duration=duration, client_procs=CLIENT_PROCS,
                                    reporters=REPORTERS, layer=CORE_LAYER if baseline else None,
                                    reporter_threads=REPORTER_THREADS)
    finally:
        group.stop_all()


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    from jobs.models import GenerationJob

    # A quick run is smaller by design (a fifth of the jobs, watchers and rate): its 2 x 2,000 handshakes
    # alone would take most of the 5 minutes a quick run may last.
    jobs, rate, duration = (JOBS // 5, RATE / 5, 4.0) if quick else (JOBS, RATE, 60.0)
    user, token = common.make_user_with_token()
    project = common.make_project(user)
    job_ids, start_seq = push.running_jobs(project, jobs, bulk=True)
    ours = serve_and_watch("push10x", token, job_ids, start_seq, duration, rate, baseline=False)
    # The baseline's updates follow ours on the same jobs: start from where ours left the seqs.
    start_seq = {str(k): v for k, v in GenerationJob.objects.filter(pk__in=job_ids).values_list("pk", "seq")}
    base = serve_and_watch("push10x-base", token, job_ids, start_seq, duration, rate, baseline=True)
    out: dict[str, Any] = {f"push10x_{key}": value for key, value in ours.items()}
    out.update({f"push10x_baseline_{key}": value for key, value in base.items()})
    out.update(push10x_duration_s=duration, push10x_web_procs=common.WEB_PROCS, push10x_jobs=jobs,
               push10x_watchers_per_job=WATCHERS, push10x_rate=rate,
               push10x_reporters=f"{REPORTERS} processes x {REPORTER_THREADS} threads")
    return out
