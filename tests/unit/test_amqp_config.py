"""The RabbitMQ options (config/amqp.py) and what settings.py makes of an amqp:// CELERY_BROKER_URL."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import amqp
from jobs import broker_delay
from jobs import queues

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("url, expected", [
    ("amqp://guest:guest@mq:5672/jobs", True),
    ("amqps://u:p@mq/jobs", True),
    ("pyamqp://mq//", True),
    ("amqp://a:5672/jobs;amqp://b:5672/jobs", True),
    ("redis://127.0.0.1:6379/0", False),
    ("sentinel://a:26379/0;sentinel://b:26379/0", False),
    ("", False),
    (None, False),
])
def test_is_amqp(url, expected):
    assert amqp.is_amqp(url) is expected


def test_job_queues_are_durable_quorum_queues_behind_topic_exchanges():
    declared = amqp.task_queues(queues.ALL)

    assert [q.name for q in declared] == list(queues.ALL)
    for queue in declared:
        assert queue.queue_arguments == {"x-queue-type": "quorum"} and queue.durable
        # Native delayed delivery cannot route through a direct exchange (celery logs and blocks instead).
        assert (queue.exchange.name, queue.exchange.type, queue.routing_key) == (queue.name, "topic", queue.name)


@pytest.mark.parametrize("seconds, expected", [(0.2, 1.0), (1.0, 1.0), (1.01, 2.0), (7.6, 8.0), (0, 0), (-1, -1)])
def test_countdown_is_whole_seconds_and_at_least_one_with_native_delay(seconds, expected):
    assert broker_delay.countdown(seconds, native_delay=True) == expected


def test_countdown_unchanged_without_native_delay():
    assert broker_delay.countdown(0.37, native_delay=False) == 0.37


def _settings_with(**env: str) -> dict:
    show = ("import json; from config.celery import app; c = app.conf; print(json.dumps({"
            "'queue_type': c.task_default_queue_type, 'options': sorted(c.broker_transport_options),"
            "'queues': {q.name: [q.exchange.type, q.queue_arguments] for q in c.task_queues}}))")
    base = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "REDIS_SENTINELS")}
    result = subprocess.run([sys.executable, "manage.py", "shell", "--no-imports", "-c", show], cwd=ROOT,
                            env={**base, **env}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_settings__amqp_broker_declares_quorum_queues_and_drops_the_redis_transport_options():
    conf = _settings_with(CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:5672/jobs")

    assert conf["queue_type"] == "quorum"
    assert conf["queues"] == {name: ["topic", {"x-queue-type": "quorum"}] for name in queues.ALL}
    assert conf["options"] == ["confirm_publish", "write_timeout"]  # no visibility_timeout, no key prefix


def test_settings__redis_broker_keeps_classic_queues():
    conf = _settings_with(REDIS_URL="redis://127.0.0.1:6379/0")

    assert conf["queue_type"] == "classic"
    assert all(arguments is None for _, arguments in conf["queues"].values())
    assert "visibility_timeout" in conf["options"]
