"""The workers' pool (patches/celery_pool.py): children recycled after every task are replaced, and each task
sent while the last one's child is exiting still runs, in a child of its own."""
from __future__ import annotations

import pytest

from tests.tasks_for_tests import POOL_CHILD_STATE_TASK_NAME, POOL_PID_TASK_NAME

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TASKS = 8


def test_worker_pool__children_recycled_after_each_task_run_every_task_sent_one_after_another(processes) -> None:
    from config.celery import app

    # Given a worker on the production pool whose two children exit after each task
    processes.start_worker(queues="maintenance", concurrency=2, extra_args=["-I", "tests.tasks_for_tests"],
                           CELERY_WORKER_MAX_TASKS_PER_CHILD="1")
    stats = app.control.inspect(timeout=10).stats() or {}
    assert [s["pool"]["implementation"] for s in stats.values()] == ["patches.celery_pool:TaskPool"], stats

    # When tasks are sent one at a time, each as soon as the last one's result is in (its child is then
    # exiting: the pool must not hand it the next task)
    pids = [app.send_task(POOL_PID_TASK_NAME, queue="maintenance").get(timeout=30) for _ in range(TASKS)]

    # Then every task ran, each in a child of its own
    assert len(set(pids)) == TASKS, pids
    # And the children were forked from a main process whose start-up objects are frozen, so Celery's
    # gc.collect() before each fork no longer walks them; and they poll for their last result's count often
    state = app.send_task(POOL_CHILD_STATE_TASK_NAME, queue="maintenance").get(timeout=30)
    assert state["frozen"] > 10_000, state
    assert state["consumed_poll_s"] <= 0.005 and round(state["consumed_patience_s"]) == 30, state
