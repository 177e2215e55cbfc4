"""The Twisted TCP write patch: applied on the tested Twisted, Twisted's own write elsewhere."""
from __future__ import annotations

import pytest
from twisted.internet import tcp

from patches import twisted_tcp
from tests.unit.patches.test_versions import covers


@pytest.fixture
def stock_write(monkeypatch):
    """Twisted's write as this process has it; put back after the test whatever the test installed."""
    original = tcp.Connection.write
    monkeypatch.setattr(tcp.Connection, "write", original)
    return original


def test_twisted_tcp__tested_versions_cover_the_pinned_twisted() -> None:
    assert covers(twisted_tcp.TESTED, "Twisted")


def test_twisted_tcp__applied_on_the_tested_twisted(stock_write) -> None:
    assert twisted_tcp.install_optimistic_tcp_writes()
    assert tcp.Connection.write is not stock_write and tcp.Connection.write.optimistic


def test_twisted_tcp__outside_the_tested_twisted_the_stock_write_stays(stock_write, installed, caplog) -> None:
    installed(Twisted="27.1.0")
    assert not twisted_tcp.install_optimistic_tcp_writes()
    assert tcp.Connection.write is stock_write
    assert "twisted_tcp not applied" in caplog.text and "Twisted 27.1.0 is outside" in caplog.text
