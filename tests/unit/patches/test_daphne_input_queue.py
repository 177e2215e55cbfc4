"""daphne's per-connection input queue patch: a LightQueue on the tested daphne, stock daphne's elsewhere."""
from __future__ import annotations

import pytest
from daphne.server import Server

from patches import daphne_input_queue
from tests.unit.patches.test_versions import covers


@pytest.fixture
def restored():
    stock = Server.create_application
    yield stock
    Server.create_application = stock


def test_daphne_input_queue__tested_versions_cover_the_pinned_daphne() -> None:
    assert covers(daphne_input_queue.TESTED, "daphne")


def test_daphne_input_queue__applied_on_the_tested_daphne(restored) -> None:
    daphne_input_queue.install_light_input_queues()
    assert Server.create_application is daphne_input_queue.create_application


def test_daphne_input_queue__outside_the_tested_daphne_the_stock_queue_stays(restored, installed, caplog) -> None:
    installed(daphne="5.0")
    daphne_input_queue.install_light_input_queues()
    assert Server.create_application is restored
    assert "daphne 5.0 is outside" in caplog.text
