"""Shared fixtures: factories, and the test run's isolation (its own Redis key prefix and database, and with
TEST_BROKER=amqp its own RabbitMQ vhost)."""
from __future__ import annotations

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import override_settings

from jobs import listeners


@pytest.fixture(scope="session", autouse=True)
def broker_vhost():
    """With TEST_BROKER=amqp, the session's own RabbitMQ vhost (its name; None on Redis): this process's Celery
    app publishes there with the quorum-queue options of config/amqp.py, and every worker, beat and daphne
    started through tests/processes.py gets it as CELERY_BROKER_URL. Deleted, queues and all, at the end."""
    from tests import brokers

    if brokers.broker_under_test() != "amqp":
        yield None
        return
    if not brokers.rabbitmq_reachable():
        pytest.exit(f"TEST_BROKER=amqp but RabbitMQ is not reachable at {brokers.RABBITMQ_URL} (set RABBITMQ_URL)",
                    returncode=3)
    with brokers.rabbitmq_vhost_broker() as (vhost, _url):
        yield vhost


class FastPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """PBKDF2 at 1,000 iterations, not Django's 1,000,000 (0.4 CPU-s per user made or password checked on this
    machine, hundreds of times a run). Same algorithm name, and PBKDF2 reads the iterations from the stored
    hash, so the web and worker processes (stock hashers) still check these passwords (and upgrade the hash on
    a successful login, as production does with old hashes)."""

    iterations = 1000


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing():
    from django.conf import settings

    others = [name for name in settings.PASSWORD_HASHERS if not name.endswith(".PBKDF2PasswordHasher")]
    with override_settings(PASSWORD_HASHERS=["tests.conftest.FastPBKDF2PasswordHasher", *others]):
        yield


@pytest.fixture(autouse=True)
def _empty_app_cache():
    """Each test starts with none of this run's Django cache keys (throttle counters are keyed by user id,
    and SQLite hands the same ids to every test's users). Only this run's key prefix is touched, never a
    FLUSHDB on a Redis other runs share."""
    from django.core.cache import cache

    try:
        client = cache._cache.get_client(write=True)
        keys = list(client.scan_iter(match=f"{cache.key_prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    except Exception:  # a test that stopped Redis on purpose is not this fixture's business
        pass
    yield


@pytest.fixture
def captured_events():
    """Collect committed job events handed to the listeners during a test."""
    seen: list[listeners.CommittedEvent] = []
    listeners.register_listener(seen.append)
    yield seen
    listeners.unregister_listener(seen.append)


@pytest.fixture
def user(db):
    from tests.factories import make_user

    return make_user()


@pytest.fixture
def other_user(db):
    from tests.factories import make_user

    return make_user()


@pytest.fixture
def staff_user(db):
    from tests.factories import make_user

    return make_user(staff=True)


@pytest.fixture
def processes(transactional_db):
    """Real worker/beat/daphne processes against the test database; all stopped after the test."""
    from tests.processes import ProcessGroup

    group = ProcessGroup()
    yield group
    group.stop_all()


@pytest.fixture(scope="module")
def backend():
    """A Stable Diffusion stand-in on loopback whose prompts choose its behaviour (tests/e2e/fake_backend.py)."""
    from tests.e2e.fake_backend import FakeBackend

    server = FakeBackend().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-protocol server (moto_server) with a bucket, behind a proxy a test can stop (tests/s3store.py)."""
    from tests.s3store import moto_s3

    with moto_s3() as server:
        yield server


@pytest.fixture
def s3(s3_server, settings):
    """This process stores artifacts in the (emptied) bucket, as ARTIFACT_STORAGE=s3 would."""
    s3_server.proxy.stop()
    s3_server.proxy.start()  # a test may have left it stopped
    s3_server.empty()
    settings.ARTIFACT_STORAGE = "s3"
    settings.STORAGES = {**settings.STORAGES, "artifacts": s3_server.storage()}
    yield s3_server
