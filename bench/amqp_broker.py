"""RabbitMQ against Redis as the Celery broker: tracked jobs per second through each, same machine, same run.

`jobs_per_s_redis` / `jobs_per_s_amqp`: bench/throughput.py's `jobs_rate` (job_create through the service
from 4 threads -> the production on-commit dispatch -> JobStageTask's claim and start -> job_complete,
result stored) on one fresh worker with 2 pool processes and the production worker settings, first with
the Redis broker, then with RabbitMQ on a vhost of its own (quorum queues, publisher confirms: what
settings.py configures for an amqp:// CELERY_BROKER_URL). The full run alternates the two brokers twice and
averages, so a machine that slows down during the run penalises neither. The per-user running limit is
lifted (JOBS_MAX_RUNNING_PER_USER=0) so that admission does not pace the jobs. `amqp_vs_redis_jobs_ratio`:
RabbitMQ's rate over Redis's (target ≥ 0.8). Needs RabbitMQ at RABBITMQ_URL (tests/brokers.py).
"""
from __future__ import annotations

from typing import Any

from jobs import queues

from . import common, throughput

ALL_QUEUES = ",".join(queues.ALL)


def _rate_on_current_broker(project: Any, count: int, name: str) -> float:
    from bench import tasks

    group = common.process_group()
    try:
        group.start_worker(name, queues=ALL_QUEUES, concurrency=2, LOG_LEVEL="INFO",
                           extra_args=["--include", "bench.tasks"], JOBS_MAX_RUNNING_PER_USER="0")
        with common.dispatching(tasks.job_signature_for(tasks.noop_job_task)):
            throughput.jobs_rate(project, 10)  # warm-up: pool children forked and connected
            return throughput.jobs_rate(project, count)
    finally:
        group.stop_all()


def _rate_on_rabbitmq(project: Any, count: int) -> float:
    from tests import brokers

    if not brokers.rabbitmq_reachable():
        raise RuntimeError(f"RabbitMQ is not reachable at {brokers.RABBITMQ_URL} (set RABBITMQ_URL)")
    with brokers.rabbitmq_vhost_broker():
        return _rate_on_current_broker(project, count, "bench-amqp-worker")


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    from django.conf import settings

    user, _ = common.make_user_with_token()
    project = common.make_project(user)
    count, rounds = (40, 1) if quick else (300, 2)
    redis_rates, amqp_rates = [], []
    # One user creates every job: without lifting the per-user running limit (admission, default 2) the
    # rate would be admission's pacing, the same with either broker.
    jobs_before = settings.JOBS
    settings.JOBS = {**settings.JOBS, "MAX_RUNNING_PER_USER": 0}
    try:
        for _ in range(rounds):
            redis_rates.append(_rate_on_current_broker(project, count, "bench-redis-worker"))
            amqp_rates.append(_rate_on_rabbitmq(project, count))
    finally:
        settings.JOBS = jobs_before
    redis_rate, amqp_rate = common.mean(redis_rates), common.mean(amqp_rates)
    return {
        "jobs_per_s_redis": round(redis_rate, 1),
        "jobs_per_s_amqp": round(amqp_rate, 1),
        "amqp_vs_redis_jobs_ratio": round(amqp_rate / redis_rate, 3),
        "amqp_bench_rounds": {"redis": [round(r, 1) for r in redis_rates], "amqp": [round(r, 1) for r in amqp_rates],
                              "jobs_per_round": count},
    }
