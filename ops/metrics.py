"""Prometheus metrics: what workers and consumers record, and what /metrics computes at scrape time.

Events (queue wait, run time, progress events, pushes, retries, reaper actions, websocket connections) are
recorded by whichever process sees them. Web, workers and their pool children are separate processes, so
prometheus_client's multiprocess mode keeps each process's values in an mmap'ed file under
settings.PROMETHEUS_MULTIPROC_DIR and /metrics sums the files. Job counts and queue depths are not events:
`JobsCollector` reads them from PostgreSQL and Redis on every scrape.

Every `observe_*` / `count_*` function swallows its own errors: a metrics failure must never break a job.
"""
from __future__ import annotations

import functools
import glob
import logging
import os
import shutil
import socket
from typing import Any, Callable, Iterable, Iterator

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from jobs import plans, queues, states

logger = logging.getLogger(__name__)

QUEUES = queues.ALL
# Queue waits range from milliseconds (idle workers) to an hour (a backlog of videos).
QUEUE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# A no-op job takes milliseconds, a long video an hour (the default hard time limit).
RUN_TIME_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
_LABEL_MAX = 64
_HOST = socket.gethostname().replace("_", "-")[:64] or "host"


def multiproc_dir() -> str:
    """The shared metrics directory ('' when multiprocess mode is off)."""
    return str(getattr(settings, "PROMETHEUS_MULTIPROC_DIR", "") or "")


def _process_identifier() -> str:
    # Containers sharing one metrics volume each have their own pid 1, 7, …: the hostname keeps their
    # files apart. No underscores: prometheus_client splits file names on "_".
    return f"{_HOST}-{os.getpid()}"


def _enable_multiprocess() -> bool:
    """Point prometheus_client at the shared directory before any metric object exists."""
    path = multiproc_dir()
    if not path:
        return False
    try:
        os.makedirs(path, exist_ok=True)
        # A file named after this process is left over from a dead process that had the same pid: its
        # live gauges (websocket connections) would otherwise be counted again.
        for stale in glob.glob(os.path.join(path, f"gauge_live*_{_process_identifier()}.db")):
            os.remove(stale)
    except OSError:
        logger.warning("metrics: cannot use %s; falling back to per-process metrics", path, exc_info=True)
        return False
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path  # MmapedValue reads the directory from here
    values.ValueClass = values.MultiProcessValue(_process_identifier)
    return True


MULTIPROCESS = _enable_multiprocess()

QUEUE_WAIT = Histogram("jobs_queue_wait_seconds", "Seconds from a job being queued to a worker starting it.",
                       ["job_type"], buckets=QUEUE_WAIT_BUCKETS)
RUN_TIME = Histogram("jobs_run_seconds", "Seconds a job attempt ran, from start to its end state.",
                     ["job_type"], buckets=RUN_TIME_BUCKETS)
EVENTS = Counter("jobs_events", "Job events committed (status changes and progress reports).", ["kind"])
PUSHES = Counter("realtime_pushes", "Job events sent to websocket groups, by outcome.", ["result"])
COALESCED = Counter("realtime_coalesced_updates", "Progress updates merged into a later one instead of sent.")
WS_CONNECTIONS = Gauge("realtime_websocket_connections", "Open websocket connections.",
                       multiprocess_mode="livesum")
REAPER_ACTIONS = Counter("jobs_reaper_actions", "What the reaper did to stale or stuck jobs.", ["action"])
RETRIES = Counter("jobs_retries", "Job attempts retried after a transient error.", ["job_type"])
STORE_OPS = Counter("artifact_store_operations", "Artifact store calls (upload, download, read, delete, …) that "
                    "succeeded.", ["backend", "op"])
STORE_BYTES = Counter("artifact_store_bytes", "Bytes uploaded to and downloaded from the artifact store.",
                      ["backend", "direction"])
STORE_ERRORS = Counter("artifact_store_errors", "Artifact store calls that failed, by kind of failure: "
                       "unavailable (retried), refused (credentials, bucket), missing (no such object).",
                       ["backend", "op", "kind"])
ADMISSION_WAIT = Histogram("jobs_admission_wait_seconds",
                           "Seconds a job waited in the database before admission sent it to Celery.",
                           ["queue"], buckets=QUEUE_WAIT_BUCKETS)
DEADLINES = Counter("jobs_deadlines", "Jobs expired (start_timeout_s) or timed out (max_runtime_s, JOB_TIME_LIMIT_S).",
                    ["outcome"])


def _label(value: object) -> str:
    return str(value)[:_LABEL_MAX] or "unknown"


# --- recording (called by workers, the dispatcher, consumers; never raise) ---------------------------

def _never_raise(record: Callable[..., None]) -> Callable[..., None]:
    """The one guard of every recording function: a metrics failure is logged, never raised into a job."""

    @functools.wraps(record)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            record(*args, **kwargs)
        except Exception:
            logger.debug("metrics: %s failed", record.__name__, exc_info=True)

    return guarded


@_never_raise
def observe_queue_wait(job_type: str, seconds: float) -> None:
    QUEUE_WAIT.labels(job_type=_label(job_type)).observe(max(0.0, float(seconds)))


@_never_raise
def observe_run_time(job_type: str, seconds: float) -> None:
    RUN_TIME.labels(job_type=_label(job_type)).observe(max(0.0, float(seconds)))


@_never_raise
def observe_admission_wait(queue: str, seconds: float) -> None:
    ADMISSION_WAIT.labels(queue=_label(queue)).observe(max(0.0, float(seconds)))


@_never_raise
def count_deadline(outcome: str) -> None:
    DEADLINES.labels(outcome=_label(outcome)).inc()


@_never_raise
def count_event(kind: str) -> None:
    EVENTS.labels(kind=_label(kind)).inc()


@_never_raise
def count_push(ok: bool) -> None:
    PUSHES.labels(result="ok" if ok else "error").inc()


@_never_raise
def count_coalesced(n: int = 1) -> None:
    if n > 0:
        COALESCED.inc(n)


@_never_raise
def ws_connections_inc() -> None:
    WS_CONNECTIONS.inc()


@_never_raise
def ws_connections_dec() -> None:
    WS_CONNECTIONS.dec()


@_never_raise
def count_reaper_action(action: str) -> None:
    REAPER_ACTIONS.labels(action=_label(action)).inc()


@_never_raise
def count_store_op(backend: str, op: str, nbytes: int | None = None) -> None:
    STORE_OPS.labels(backend=_label(backend), op=_label(op)).inc()
    if nbytes and op in ("upload", "download"):
        STORE_BYTES.labels(backend=_label(backend), direction=op).inc(nbytes)


@_never_raise
def count_store_error(backend: str, op: str, kind: str) -> None:
    STORE_ERRORS.labels(backend=_label(backend), op=_label(op), kind=_label(kind)).inc()


@_never_raise
def count_retry(job_type: str) -> None:
    RETRIES.labels(job_type=_label(job_type)).inc()


def job_event_hook(job: Any, *, kind: str, previous_status: str | None) -> Callable[[], None]:
    """A `transaction.on_commit` callback recording one job event: counted, and timed when it starts or
    ends an attempt. The values are copied now, so the callback never touches the database."""
    try:
        job_type, status = job.job_type, job.status
        wait = run = None
        if kind == "status" and previous_status == states.QUEUED and status == states.PROCESSING:
            wait = (job.started_at - job.queued_at).total_seconds() if job.queued_at and job.started_at else None
        elif kind == "status" and previous_status == states.PROCESSING and status in states.TERMINAL:
            run = (job.completed_at - job.started_at).total_seconds() if job.started_at and job.completed_at else None
    except Exception:
        logger.debug("metrics: job_event_hook failed", exc_info=True)
        return _nothing

    def record() -> None:
        count_event(kind)
        if wait is not None:
            observe_queue_wait(job_type, wait)
        if run is not None:
            observe_run_time(job_type, run)

    return record


def _nothing() -> None:
    return None


# --- scrape-time state: jobs in the database, messages in the broker ---------------------------------

def queue_keys(queue: str) -> list[str]:
    """The broker's Redis keys holding `queue`'s messages: one list per priority step, kombu's naming."""
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    prefix = (getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}).get("global_keyprefix", "")
    return [f"{prefix}{queue}" if step == 0 else f"{prefix}{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS]


def broker_source() -> str:
    """Which broker the queue depths come from: "rabbitmq" (an amqp:// broker) or "redis"."""
    from config.amqp import is_amqp
    from config.celery import app

    return "rabbitmq" if is_amqp(app.conf.broker_url) else "redis"


def queue_depths(queues: Iterable[str] | None = None) -> dict[str, int]:
    """Messages waiting in each Celery queue (Redis: one pipelined round trip; RabbitMQ: a passive declare
    per queue; short timeouts either way)."""
    from .redis_clients import client as redis_client

    queues = list(queues or getattr(settings, "JOB_QUEUES", QUEUES))
    if broker_source() == "rabbitmq":
        from config.celery import app

        from .amqp_queues import queue_depths as amqp_queue_depths

        return amqp_queue_depths(app, queues)
    # The broker's Redis, through its sentinels when it has some (settings.REDIS_ROLES).
    client = redis_client(settings.REDIS_ROLES.broker, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            for key in queue_keys(queue):
                pipe.llen(key)
        lengths = pipe.execute()
    finally:
        client.close()
    steps = len(lengths) // max(1, len(queues))
    return {queue: int(sum(lengths[i * steps:(i + 1) * steps])) for i, queue in enumerate(queues)}


def job_counts() -> dict[tuple[str, str], int]:
    """{(status, job_type): n} for every combination, from one GROUP BY query."""
    from django.db.models import Count

    from config.db_routers import replica_reads
    from jobs.models import GenerationJob

    counts = {(status, job_type): 0 for status in states.STATUSES for job_type in plans.JOB_TYPES}
    with replica_reads():  # a scrape tolerates the replica's lag (config/db_routers.py)
        rows = list(GenerationJob.objects.order_by().values_list("status", "job_type").annotate(n=Count("id")))
    for status, job_type, n in rows:
        counts[(status, job_type)] = n
    return counts


class JobsCollector:
    """Computes job and queue gauges at scrape time; a source that is down is reported, not raised."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("jobs_metrics_source_up", "Whether /metrics could read this source.",
                               labels=["source"])
        jobs = GaugeMetricFamily("jobs_by_status", "Jobs in the database by status and type.",
                                 labels=["status", "job_type"])
        try:
            for (status, job_type), n in sorted(job_counts().items()):
                jobs.add_metric([status, job_type], n)
            up.add_metric(["database"], 1)
            yield jobs
        except Exception:
            logger.warning("metrics: job counts unavailable", exc_info=True)
            up.add_metric(["database"], 0)
        depth = GaugeMetricFamily("jobs_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"])
        source = broker_source()  # the source label names the broker: "redis" or "rabbitmq"
        try:
            for queue, n in queue_depths().items():
                depth.add_metric([queue], n)
            up.add_metric([source], 1)
            yield depth
        except Exception:
            logger.warning("metrics: queue depths unavailable", exc_info=True)
            up.add_metric([source], 0)
        yield up


def render(*, include_state: bool = True) -> tuple[bytes, str]:
    """The exposition text: recorded metrics of every process, plus the scrape-time job/queue gauges."""
    path = multiproc_dir()
    if path and os.path.isdir(path):
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)
        output = generate_latest(registry)
    else:
        output = generate_latest(REGISTRY)
    if include_state:
        state = CollectorRegistry(auto_describe=False)
        state.register(JobsCollector())
        from .fair_metrics import FairnessCollector

        state.register(FairnessCollector())
        output += generate_latest(state)
    return output, CONTENT_TYPE_LATEST


# --- operations: reset at deployment start, mark a dead process --------------------------------------

def reset(path: str | None = None) -> None:
    """Empty the metrics directory. Only when NO process of the deployment runs (a deployment's start):
    a running process keeps writing to its unlinked file and its numbers vanish from /metrics."""
    path = path or multiproc_dir()
    if not path:
        return
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)


def mark_process_dead(pid: int | None = None) -> None:
    """Drop a finished process's live gauges (its counters and histograms stay in the totals)."""
    path = multiproc_dir()
    if not (MULTIPROCESS and path):
        return
    try:
        identifier = f"{_HOST}-{pid}" if pid is not None else _process_identifier()
        for stale in glob.glob(os.path.join(path, f"gauge_live*_{identifier}.db")):
            os.remove(stale)
    except OSError:
        logger.debug("metrics: mark_process_dead failed", exc_info=True)
