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
from functools import lru_cache
from typing import Iterator

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

RUNNING, RETRYING, DONE = "running", "retrying", "done"
# Outcomes of `claim_stage`.
CLAIMED, HELD, FINISHED, LOST = "claimed", "held", "finished", "lost"
KEY_TTL_S = 2 * 86400  # leases of old attempts just expire

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


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, decode_responses=True)


def client() -> redis.Redis:
    """The Redis database for the app's own keys (settings.REDIS_APP_URL)."""
    return _client(settings.REDIS_APP_URL)


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
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:  # exists, owned by someone else
                return True
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


def claim_stage(job_id: object, attempt: int, stage: str, task_id: str, ttl_s: float) -> tuple[str, Lease | None]:
    """Try to become the runner of a stage; returns (CLAIMED|HELD|FINISHED|LOST, the lease seen)."""
    mine = _new(stage, task_id, RUNNING, ttl_s)
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
            # The same message again while marked running: the execution that claimed it is gone
            # (the broker only redelivers after the worker died or the visibility timeout passed).
            return LOST, current
        if not current.holder_alive():
            return LOST, current
        return HELD, current
    return HELD, get_stage(job_id, attempt, stage)


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
