"""Shared fixtures: factories, and the test run's isolation (its own Redis key prefix and database)."""
from __future__ import annotations

import pytest

from jobs import listeners


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
