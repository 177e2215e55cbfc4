"""Shared fixtures: factories, and the test run's isolation (its own Redis key prefix and database)."""
from __future__ import annotations

import pytest

from jobs import listeners


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
