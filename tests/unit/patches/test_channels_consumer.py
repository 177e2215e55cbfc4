"""The consumer dispatch loop patch: applied on the tested channels, stock channels' loop elsewhere."""
from __future__ import annotations

import inspect

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer
from channels.testing import ApplicationCommunicator

from patches import channels_consumer
from tests.unit.patches.test_versions import covers


class _Probe(channels_consumer.InboxDispatchMixin, AsyncConsumer):
    channel_layer_alias = "no-layer-in-this-test"

    async def probe_where(self, message: dict) -> None:
        loops = [frame.function for frame in inspect.stack()
                 if frame.function in ("_dispatch_all", "await_many_dispatch")]
        await self.send({"type": "probe.loop", "loops": loops})
        raise StopConsumer


async def _loop_that_dispatched() -> list[str]:
    communicator = ApplicationCommunicator(_Probe.as_asgi(), {"type": "probe"})
    await communicator.send_input({"type": "probe.where"})
    answer = await communicator.receive_output(5)
    await communicator.wait(5)  # the consumer ended cleanly, its loop with it
    return answer["loops"]


def test_channels_consumer__tested_versions_cover_the_pinned_channels() -> None:
    assert covers(channels_consumer.TESTED, "channels")


async def test_channels_consumer__applied_on_the_tested_channels() -> None:
    assert await _loop_that_dispatched() == ["_dispatch_all"]


async def test_channels_consumer__outside_the_tested_channels_the_stock_loop_runs(installed, caplog) -> None:
    installed(channels="9.0.0")
    assert await _loop_that_dispatched() == ["await_many_dispatch"]
    assert "channels 9.0.0 is outside the tested versions" in caplog.text
