"""Who runs which stage of a job attempt right now: per-stage leases and a maintenance lock, in Redis.

The job row's lease (`worker`, `heartbeat_at`, claimed by the conditional queued -> processing update in
`services.job_start`) says a job is running; a `full_video` job runs two stages at once on different
workers, so each stage task also claims a lease on (job, attempt, stage) here. It tells a redelivered
task whether its stage is running elsewhere (a duplicate: do nothing), finished (do nothing), or was
held by a worker that died (count a lost worker), and tells the cancel path which task to terminate.

Values are JSON {"task_id", "pid", "host", "state": running|retrying|done, "until": epoch seconds}; a
running lease is refreshed with every heartbeat, so `until` in the past means its holder stopped.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import psutil
import redis
from django.conf import settings

from ops import redis_clients

logger = logging.getLogger(__name__)

RUNNING, RETRYING, DONE = "running", "retrying", "done"
# Outcomes of `claim_stage`.
CLAIMED, HELD, FINISHED, LOST = "claimed", "held", "finished", "lost"
KEY_TTL_S = 2 * 86400  # leases of old attempts just expire
# The locks' Redis could not be reached: restarting, or no master yet during a Sentinel failover.
UNAVAILABLE: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)

# Compare-and-set of one hash field: set ARGV[3] if the field equals ARGV[2] ("" = absent).
_CAS = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if (current == false and ARGV[2] == '') or current == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return 1
end
return 0
"""
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def client() -> redis.Redis:
    """The locks' Redis (settings.REDIS_ROLES.locks; through the sentinels when configured, so a failover
    only fails the calls made while no master is known)."""
    return redis_clients.locks_client()


def _key(*parts: object) -> str:
    return ":".join([settings.REDIS_KEY_PREFIX, "jobs", *map(str, parts)])


def worker_identity() -> str:
    """This process as it appears in `GenerationJob.worker`: "<pid>@<host>"."""
    return f"{os.getpid()}@{socket.gethostname()}"


@dataclass(frozen=True)
class Lease:
    stage: str
    task_id: str
    pid: int
    host: str
    state: str
    until: float

    @property
    def raw(self) -> str:
        return json.dumps({"task_id": self.task_id, "pid": self.pid, "host": self.host, "state": self.state,
                           "until": self.until}, sort_keys=True)

    @classmethod
    def parse(cls, stage: str, raw: str) -> Lease:
        data = json.loads(raw)
        return cls(stage, data.get("task_id", ""), int(data.get("pid", 0)), data.get("host", ""),
                   data.get("state", RUNNING), float(data.get("until", 0)))

    def holder_alive(self, now: float | None = None) -> bool:
        """A live holder: refreshed recently and, when on this host, its process still exists."""
        if self.until < (now if now is not None else time.time()):
            return False
        if self.state == RUNNING and self.host == socket.gethostname() and self.pid:
            return _process_alive(self.pid)
        return True


def _process_alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (killed, not yet reaped by its parent)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # exists, owned by someone else
        return True


def _stages_key(job_id: object, attempt: int) -> str:
    return _key("stages", job_id, attempt)


def _new(stage: str, task_id: str, state: str, ttl_s: float) -> Lease:
    return Lease(stage, task_id, os.getpid(), socket.gethostname(), state, time.time() + ttl_s)


def get_stage(job_id: object, attempt: int, stage: str) -> Lease | None:
    raw = client().hget(_stages_key(job_id, attempt), stage)
    return Lease.parse(stage, raw) if raw else None


def stages(job_id: object, attempt: int) -> list[Lease]:
    """Every stage lease of one attempt."""
    return [Lease.parse(stage, raw) for stage, raw in client().hgetall(_stages_key(job_id, attempt)).items()]


def _cas(job_id: object, attempt: int, stage: str, expected: str, new: Lease) -> bool:
    return bool(client().eval(_CAS, 1, _stages_key(job_id, attempt), stage, expected, new.raw, KEY_TTL_S))


def claim_stage(job_id: object, attempt: int, stage: str, task_id: str, ttl_s: float,
                refresh_wait_s: float = 0.0) -> tuple[str, Lease | None]:
    """Try to become the runner of a stage; returns (CLAIMED|HELD|FINISHED|LOST, the lease seen).

    `refresh_wait_s`: how long a redelivered message may watch its stage's running holder for a sign of
    life (a refreshed lease) before counting it lost (see `_redelivered_outcome`)."""
    mine = _new(stage, task_id, RUNNING, ttl_s)
    # The usual case (no lease yet: a first delivery) in one round trip: the CAS itself says absent.
    if _cas(job_id, attempt, stage, "", mine):
        return CLAIMED, None
    for _ in range(3):  # a concurrent change between read and CAS just means "look again"
        current = get_stage(job_id, attempt, stage)
        if current is None:
            if _cas(job_id, attempt, stage, "", mine):
                return CLAIMED, None
            continue
        if current.state == DONE:
            return FINISHED, current
        if current.state == RETRYING and current.task_id == task_id:
            if _cas(job_id, attempt, stage, current.raw, mine):  # our own retry coming back
                return CLAIMED, current
            continue
        if current.state == RUNNING and current.task_id == task_id:
            return _redelivered_outcome(job_id, attempt, current, refresh_wait_s), current
        if not current.holder_alive():
            return LOST, current
        return HELD, current
    return HELD, get_stage(job_id, attempt, stage)


def _redelivered_outcome(job_id: object, attempt: int, current: Lease, refresh_wait_s: float) -> str:
    """The same message again while its stage is marked running: LOST if its execution is gone, HELD if it
    still runs (FINISHED if it finished meanwhile).

    Usually the execution is gone: a pool process died (the worker rejects its message back), the whole
    worker died (RabbitMQ requeues at once when the connection drops; Redis after the visibility timeout).
    But RabbitMQ also requeues every unacknowledged message of a worker whose connection was lost (a
    network cut, a cluster node restarting, consumer_timeout) while its pool processes carry on running:
    counting that as lost would start a second attempt beside a live one. A live holder refreshes its
    lease every heartbeat, so watch it for up to `refresh_wait_s`; on this host the holder's pid also
    says at once when it is gone (RabbitMQ redelivers within milliseconds of a SIGKILL, possibly before
    the killed process is reaped, hence the zombie check in `holder_alive`).
    """
    deadline = time.monotonic() + refresh_wait_s
    on_this_host = current.host == socket.gethostname()
    while current.holder_alive():
        if time.monotonic() >= deadline:
            return HELD if on_this_host else LOST  # a process that exists but is stuck still holds it
        time.sleep(min(0.2, max(0.01, deadline - time.monotonic())))
        now = get_stage(job_id, attempt, current.stage)
        if now is None:
            return LOST
        if now.raw != current.raw:  # refreshed, or finished meanwhile: its holder is alive
            return FINISHED if now.state == DONE else HELD
    return LOST


def take_over_stage(job_id: object, attempt: int, stage: str, dead: Lease, task_id: str, ttl_s: float) -> bool:
    """Replace a dead holder's lease with ours (compare-and-set: False if someone else changed it first)."""
    return _cas(job_id, attempt, stage, dead.raw, _new(stage, task_id, RUNNING, ttl_s))


def set_stage(job_id: object, attempt: int, stage: str, task_id: str, state: str, ttl_s: float) -> None:
    """Refresh (running), park (retrying, with the backoff in ttl_s) or finish (done) our stage lease."""
    key = _stages_key(job_id, attempt)
    pipe = client().pipeline()
    pipe.hset(key, stage, _new(stage, task_id, state, ttl_s).raw)
    pipe.expire(key, KEY_TTL_S)
    pipe.execute()


def stage_leases(job_id: object, attempt: int, stage: str) -> list[Lease]:
    """The leases of one stage: the whole stage's, and its scene tasks' (`images.3`, jobs/scenes.py)."""
    return [lease for lease in stages(job_id, attempt) if lease.stage == stage or lease.stage.startswith(f"{stage}.")]


def live_holders(job_id: object, attempt: int) -> list[Lease]:
    """Running or retry-waiting stage leases whose holder looks alive."""
    now = time.time()
    return [lease for lease in stages(job_id, attempt) if lease.state != DONE and lease.holder_alive(now)]


def handed_over_at(job_id: object, attempt: int) -> float | None:
    """When the attempt's latest stage finished, if every stage lease is done (the next stage's message is
    waiting in its queue, or the attempt ended); None while a stage runs or when no lease exists."""
    leases = stages(job_id, attempt)
    if not leases or any(lease.state != DONE for lease in leases):
        return None
    return max(lease.until for lease in leases) - KEY_TTL_S  # done leases are written with until = now + TTL


@contextmanager
def exclusive(name: str, ttl_s: float) -> Iterator[bool]:
    """A Redis lock (SET NX PX): yields True for the one holder, False for anyone else meanwhile."""
    key, token = _key("lock", name), uuid.uuid4().hex
    acquired = bool(client().set(key, token, nx=True, px=max(1, int(ttl_s * 1000))))
    try:
        yield acquired
    finally:
        if acquired:
            try:
                client().eval(_RELEASE_LOCK, 1, key, token)
            except redis.RedisError:  # it expires by itself
                logger.warning("could not release lock %s", key)
