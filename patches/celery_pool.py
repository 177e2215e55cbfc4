"""The workers' prefork pool (`worker_pool`, config/celery_settings.py): Celery's, sending no task to a pool
child that is recycling, replacing it as soon as it has exited instead of up to 5 s later, and forking it
without a full garbage collection of the worker's main process each time.

Upstream (celery 5.x `AsynPool`, billiard 4.x `Worker._do_exit` and `Pool._maintain_pool`; celery/celery#9588
"Sometimes Delays in consumer after a recycled Child Process"): a child that reaches `max_tasks_per_child`
tells the pool (a DEATH message), sleeps 1 s and exits. The pool still counts it as a free process in the
meantime, so the next task may be written into its pipe, where nobody reads it until the child is reaped and
the task put back for another child. When the child exits its sentinel pipe becomes readable, and the pool
stops watching it and calls `maintain_pool`, which reaps the children `waitpid(WNOHANG)` finds exited; but
the kernel closes the child's files a moment before it can be reaped, and on a busy machine `waitpid` still
found it running (every recycle in bench/time_to_start.py at load ~8): nothing was reaped and only the
pool's 5 s `maintain_pool` timer did it. That task waited ~5 s (time_to_start p99 with the production
`CELERY_WORKER_MAX_TASKS_PER_CHILD`; docs/BENCHMARKS.md).

Here, once a child's last result is in, or on its DEATH message, the pool stops writing tasks to it (its
pipe leaves the writable set, as it would at its exit); and when its sentinel fired but it could not be reaped yet, `maintain_pool` runs
again after REAP_RETRY_START_S, doubling up to REAP_RETRY_MAX_S, until it is gone (reaped, any task in its
pipe put back, its replacement forked); past that the stock 5 s timer still applies.

Before every fork Celery's `AsynPool._create_worker_process` runs `gc.collect()` (celery/celery#2927: no
garbage copied into the child). In a worker's main process that is a walk over ~155,000 objects, 130-170 ms at
load 13 on 2 cores, and the main process's event loop (every other child's tasks and results) waits for it;
with `max_tasks_per_child` 10 that is once every 10 tasks per child: a quarter of the recycling worker's
samples in bench/throughput.py's profile. Here the first fork collects and then freezes what survived (the
imported code and settings: `gc.freeze()`, Python's advice for processes that fork without exec), so later
collections only walk what the main process allocated since (~0 ms), and children share those pages instead
of copying them as the collector touches them. The cost: a reference cycle among the frozen objects that
becomes garbage later is not collected (they are the start-up state, kept for the process's life anyway).

A recycling child, before its DEATH message, polls until the pool has counted its last result (billiard's
`Worker._ensure_messages_consumed`) every 100 ms: the count comes a moment after the result, so most recycles
kept the child's slot idle for up to 100 ms more before it could even be replaced. The children poll every
CONSUMED_POLL_S here, with the same patience in all (30 s).

Outside the tested celery and billiard series the stock pool runs.
"""
from __future__ import annotations

import gc
import logging
from typing import Any

from billiard import pool as billiard_pool
from billiard.pool import DEATH
from celery.concurrency.asynpool import AsynPool as StockAsynPool
from celery.concurrency.prefork import TaskPool as StockTaskPool

from .versions import supported

PATCH = "celery_pool"
TESTED = {"celery": ">=5.5,<5.8", "billiard": ">=4.2,<4.4"}
REAP_RETRY_START_S = 0.001
REAP_RETRY_MAX_S = 0.5
CONSUMED_POLL_S = 0.005

logger = logging.getLogger("patches")


def _poll_consumed_often() -> None:
    """Children forked from now on poll for their last result's count every CONSUMED_POLL_S (same patience)."""
    patience_s = (billiard_pool.GUARANTEE_MESSAGE_CONSUMPTION_RETRY_LIMIT
                  * billiard_pool.GUARANTEE_MESSAGE_CONSUMPTION_RETRY_INTERVAL)
    if billiard_pool.GUARANTEE_MESSAGE_CONSUMPTION_RETRY_INTERVAL > CONSUMED_POLL_S:
        billiard_pool.GUARANTEE_MESSAGE_CONSUMPTION_RETRY_INTERVAL = CONSUMED_POLL_S
        billiard_pool.GUARANTEE_MESSAGE_CONSUMPTION_RETRY_LIMIT = round(patience_s / CONSUMED_POLL_S)


class AsynPool(StockAsynPool):
    _start_up_frozen = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if supported(PATCH, TESTED):
            _poll_consumed_often()  # before the stock __init__ forks the first children
        super().__init__(*args, **kwargs)

    def _create_worker_process(self, i: int) -> Any:
        if not self._start_up_frozen and supported(PATCH, TESTED):
            gc.collect()
            gc.freeze()  # Celery's own gc.collect() below now walks only what was allocated since
            AsynPool._start_up_frozen = True
        return super()._create_worker_process(i)

    def create_result_handler(self) -> Any:
        handler = super().create_result_handler()
        if supported(PATCH, TESTED):
            stock_on_death = handler.state_handlers[DEATH]

            def on_death(pid: int, exitcode: int) -> None:
                self._stop_writing_to(pid)
                stock_on_death(pid, exitcode)

            handler.state_handlers[DEATH] = on_death  # the dict its on_state_change reads
        return handler

    def on_job_ready(self, job: Any, i: int, obj: Any, inqW_fd: int) -> None:
        super().on_job_ready(job, i, obj, inqW_fd)
        # A child's last task before recycling: it will only wait for the pool to count this result (billiard's
        # `_ensure_messages_consumed`, polling) and then send DEATH, so stop writing to it now (~0.3 s sooner).
        if self._maxtasksperchild and supported(PATCH, TESTED):
            proc = self._fileno_to_inq.get(inqW_fd)
            counter = proc is not None and self._on_ready_counters.get(proc.pid)
            if counter and counter.value + 1 >= self._maxtasksperchild:  # counted just after this call
                self._all_inqueues.discard(inqW_fd)

    def _stop_writing_to(self, pid: int) -> None:
        """No further task goes into the pipe of the exiting child `pid` (the pool's write scheduler skips,
        and unregisters, a pipe that is not in `_all_inqueues`; the child's own cleanup discards it again)."""
        for proc in self._pool:
            if proc.pid == pid:
                self._all_inqueues.discard(proc.inqW_fd)

    def _event_process_exit(self, hub: Any, proc: Any) -> None:
        super()._event_process_exit(hub, proc)
        if supported(PATCH, TESTED) and proc in self._pool:
            logger.debug("patches: pool child %s closed its sentinel before it could be reaped", proc.pid)
            self._reap_later(hub, proc, REAP_RETRY_START_S)

    def _reap_later(self, hub: Any, proc: Any, delay: float) -> None:
        def again() -> None:
            if proc not in self._pool:  # reaped meanwhile (the stock timer, another child's exit)
                return
            self.maintain_pool()
            if proc in self._pool and delay < REAP_RETRY_MAX_S:
                self._reap_later(hub, proc, min(delay * 2, REAP_RETRY_MAX_S))

        hub.call_later(delay, again)


class TaskPool(StockTaskPool):
    Pool = AsynPool
