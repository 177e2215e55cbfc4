"""The queue-position refresher's pacing across processes (real Redis): a refresh that finds another
process's mark waits only for the rest of that mark's interval, so a position lags an admission by at most
one interval."""
from __future__ import annotations

import pytest

from jobs import leases, queue_positions

MARK = leases._key("positions-refreshed")


@pytest.fixture(autouse=True)
def long_interval(monkeypatch):
    monkeypatch.setattr(queue_positions, "REFRESH_MIN_INTERVAL_S", 10.0)
    leases.client().delete(MARK)
    yield
    leases.client().delete(MARK)


def test_refresh_mark__a_second_refresh_within_the_interval_is_not_due():
    assert queue_positions._mark_refreshing()
    assert not queue_positions._mark_refreshing()


def test_refresh_mark__the_wait_is_what_is_left_of_the_other_refresh_interval_not_a_whole_one():
    # given another process's refresh that began 9.8 s of its 10 s ago
    assert queue_positions._mark_refreshing()
    leases.client().pexpire(MARK, 200)
    # then a refresh asked for now waits for the 0.2 s left, not another 10 s
    assert 0.1 < queue_positions._mark_remaining_s() <= 0.21


def test_refresh_mark__no_mark_means_no_wait():
    assert queue_positions._mark_remaining_s() < 0.01
