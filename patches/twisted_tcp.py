"""Twisted's TCP transport sends at once when nothing is queued, instead of on the next reactor turn.

Upstream (twisted/twisted#5303, open since 2011, "Default transport implementation doesn't write out bytes
immediately"): `FileDescriptor.write` only buffers and registers the socket as a writer; the reactor then
calls `doWrite`, which sends and unregisters it. For a websocket frame to an idle socket that is two
selector updates and a reactor turn per frame, a large share of a daphne fanning one job out to many
sockets (docs/BENCHMARKS.md). Here a write to a connection with an empty buffer goes straight to
`writeSomeData` (one `send`); what the kernel does not take, and every write while data is queued, goes
Twisted's buffered way, so order, producer pausing and slow readers behave as before.
"""
from __future__ import annotations

from .versions import supported

PATCH = "twisted_tcp"
TESTED = {"Twisted": "==26.10.*"}


def install_optimistic_tcp_writes() -> bool:
    """Replace `tcp.Connection.write` (once per process); False, and the stock write, outside TESTED."""
    if not supported(PATCH, TESTED):
        return False
    from twisted.internet import tcp

    if getattr(tcp.Connection.write, "optimistic", False):
        return True
    buffered_write = tcp.Connection.write

    def write(self: tcp.Connection, data: bytes) -> None:
        if (type(data) is bytes and data and self.connected and not self._writeDisconnected
                and not getattr(self, "TLS", False) and not self._tempDataBuffer
                and len(self.dataBuffer) == self.offset):
            sent = self.writeSomeData(data)
            if isinstance(sent, int):
                if sent >= len(data):
                    return
                data = data[sent:]
            # Not an int: the connection is lost; the buffered write below lets doWrite report it.
        buffered_write(self, data)

    write.optimistic = True  # type: ignore[attr-defined]
    tcp.Connection.write = write
    return True
