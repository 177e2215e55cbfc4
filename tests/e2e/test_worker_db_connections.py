"""Pool children keep their PostgreSQL connection across tasks, and replace it when it was killed."""
from __future__ import annotations

import pytest
from django.db import connection

from tests.tasks_for_tests import DB_PID_TASK_NAME

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def run_pid_task() -> int:
    from config.celery import app

    return app.send_task(DB_PID_TASK_NAME, queue="maintenance").get(timeout=30)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="pg_backend_pid is PostgreSQL's")
def test_pool_child__reuses_its_connection_and_replaces_a_killed_one(processes) -> None:
    processes.start_worker(queues="maintenance", concurrency=1, extra_args=["-I", "tests.tasks_for_tests"],
                           CELERY_WORKER_MAX_TASKS_PER_CHILD="100")
    pids = [run_pid_task() for _ in range(4)]
    assert len(set(pids)) == 1, pids  # one connection for all four tasks (it used to be one per task)

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pids[0]])
    after = run_pid_task()  # the health check at task start noticed and reconnected: no failure
    assert after != pids[0]
    assert run_pid_task() == after
