"""The faults the soak injects: workers SIGKILLed on a beat, Redis restarted empty, the artifact store away for a
while, a flapping webhook receiver.

Each fault is a small object the test's timeline calls; each records what it did, so the report and the
assertions can say how many faults the run really saw.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.webhook_receiver import WebhookReceiver
from tests.processes import ProcessGroup
from tests.redis_ha import RedisServer
from tests.s3store import TcpProxy


@dataclass
class WorkerPool:
    """Job workers and a webhooks worker; a kill takes a whole worker (main process and pool) with SIGKILL
    and starts a replacement at once, as a process supervisor would."""

    processes: ProcessGroup
    env: dict[str, str]
    job_queues: str
    machines: Path  # each worker gets a MEDIA_ROOT of its own under this: no filesystem shared with any other
    job_workers: int = 3  # two still consume while a killed one's replacement boots
    concurrency: int = 2
    live: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    started: int = 0

    def start(self) -> None:
        for _ in range(self.job_workers):
            self._start("jobs")
        self._start("hooks")

    def _start(self, role: str) -> str:
        self.started += 1
        name = f"{role}-{self.started}"
        env = {**self.env, "MEDIA_ROOT": str(self.machines / name)}
        if role == "jobs":
            self.processes.start_worker(name, queues=self.job_queues, concurrency=self.concurrency, wait=False,
                                        **env)
        else:
            # As the Procfile runs it: pool children kept for WEBHOOKS_MAX_TASKS_PER_CHILD deliveries.
            self.processes.start_worker(name, queues="webhooks", concurrency=2, wait=False,
                                        extra_args=["--max-tasks-per-child", "1000"], **env)
        self.live.append(name)
        return name

    def kill_next(self) -> str | None:
        """SIGKILL the longest-lived worker (job and webhooks workers in turn) and start its replacement; but
        only once the last replacement has booted (None until then). On a loaded machine a boot takes longer
        than the interval between kills, and killing faster than workers boot would leave none running."""
        if not self.booted(self.live[-1]):
            return None
        victim = self.live.pop(0)
        self.processes.kill(victim)
        self.killed.append(victim)
        self._start(victim.split("-")[0])
        return victim

    def booted(self, name: str) -> bool:
        """The worker said it is ready (ProcessGroup keeps the readiness checks of workers started unawaited)."""
        checks = [check for check, _, _, owner in self.processes.pending if owner == name]
        return all(check() for check in checks)


class FlappingReceiver(threading.Thread):
    """A webhook receiver that is down about half the time: refusing connections, or answering 503."""

    def __init__(self, receiver: WebhookReceiver, rng: random.Random, period_s: float = 4.0) -> None:
        super().__init__(name="soak-webhook-flapper", daemon=True)
        self.receiver, self.rng, self.period_s = receiver, rng, period_s
        self.running = threading.Event()
        self.running.set()
        self.outages = 0

    def run(self) -> None:
        while self.running.is_set():
            self._sleep(self.rng.uniform(0.5, 1.5) * self.period_s)  # up
            if not self.running.is_set():
                break
            self.outages += 1
            refuse = self.outages % 2 == 1
            if refuse:
                self.receiver.stop()
            else:
                with self.receiver.lock:
                    self.receiver.answers[:] = [503] * 100_000
            self._sleep(self.rng.uniform(0.5, 1.5) * self.period_s)  # down
            if refuse:
                self.receiver.start()
            else:
                with self.receiver.lock:
                    self.receiver.answers.clear()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.running.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)

    def settle(self) -> None:
        """Stop flapping; the loop ends any outage it is in, so the receiver is left up and answering 200."""
        self.running.clear()
        self.join(20)
        assert not self.is_alive(), "the webhook flapper did not stop"


@dataclass
class RedisRestart:
    """Stops the processes' private Redis, waits, and starts it again empty (no persistence)."""

    private_redis: RedisServer
    down_s: float = 3.0
    restarts: int = 0

    def __call__(self) -> None:
        self.private_redis.restart(down_s=self.down_s)
        self.restarts += 1


@dataclass
class StoreOutage:
    """The artifact store (the S3 endpoint) away for a while: the proxy in front of moto_server refuses new
    connections and cuts open ones, then comes back with everything the bucket held (tests/s3store.py)."""

    proxy: TcpProxy
    down_s: float = 5.0
    outages: int = 0

    def __call__(self) -> None:
        self.proxy.stop()
        time.sleep(self.down_s)
        self.proxy.start()
        self.outages += 1
