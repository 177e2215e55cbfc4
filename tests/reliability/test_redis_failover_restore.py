"""A message a Redis-broker consumer held unacknowledged when the Sentinel master died is requeued through the
new master once the consumer has reconnected (patches/kombu_redis_restore.py), not left in the unacked hash
until the visibility timeout.

Real parts: a Sentinel set of the test's own (tests/redis_ha.py), kombu's `sentinel://` transport as the
settings build it, and the patched kombu QoS. The "consumer" handed to the bootstep is a plain object with
the `connection` attribute Celery's consumer has: the step reads nothing else.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import redis
from kombu import Connection, Exchange, Queue

from config import redis_roles
from config.celery import app  # noqa: F401  (importing it installs the patch, as in every process)
from patches import kombu_redis_restore
from tests.processes import artifacts_dir, free_port
from tests.redis_ha import SentinelSet

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


@pytest.fixture(scope="module")
def sentinel_set():
    ha = SentinelSet(artifacts_dir() / f"sentinel-restore-{free_port()}").start()
    yield ha
    ha.stop()


def _connection(ha: SentinelSet) -> Connection:
    url, options = redis_roles.celery_broker(redis_roles.roles_from_env(ha.env()).broker, None)
    return Connection(url, transport_options={**options, "visibility_timeout": 3600}, connect_timeout=2)


def test_failover__a_message_held_when_the_master_died_is_requeued_through_the_new_master(sentinel_set):
    queue = Queue(f"restore-{free_port()}", Exchange("restore-test", type="direct"), routing_key="restore")
    # Given a consumer holding an unacknowledged message (replicated to the replica, as a reserved task is)
    with _connection(sentinel_set) as producer:
        producer.Producer().publish({"n": 1}, exchange=queue.exchange, routing_key="restore", declare=[queue])
    consumer = _connection(sentinel_set)
    held = queue(consumer.default_channel).get(no_ack=False)
    assert held is not None and held.payload == {"n": 1}
    sentinel_set.master.client().execute_command("WAIT", 1, 2000)

    # When the master dies and the consumer's channel is closed at once (kombu requeues what it held, through
    # the dead master: that fails), and the consumer reconnects after the failover
    old, _ = sentinel_set.kill_master()
    try:
        consumer.default_channel.qos.restore_unacked_once()
    except redis.exceptions.ConnectionError:
        pass  # unpatched kombu raises here, and Celery's consumer swallows it with the connection error
    sentinel_set.wait_failover(old)
    with _connection(sentinel_set) as reconnected:
        kombu_redis_restore.RestoreLostMessages(SimpleNamespace()).start(SimpleNamespace(connection=reconnected))

        # Then the message is back in its queue on the new master, to be delivered again at once
        again = queue(reconnected.default_channel).get(no_ack=True)
    assert again is not None and again.payload == {"n": 1}
    sentinel_set.heal()
