"""`python -m config.daphne …`: daphne (same arguments, same ASGI application), tuned for many websockets.

The two changes are `install_optimistic_tcp_writes` and `GC_THRESHOLDS` below. README tells production to
run the web processes this way; bench/ws_fanout.py measures it against stock `daphne`.
"""
from __future__ import annotations

import sys


def install_optimistic_tcp_writes() -> None:
    """Let Twisted TCP connections send at once when nothing is queued, instead of on the next loop turn.

    Twisted's `FileDescriptor.write` only buffers and registers the socket as a writer; the loop then
    calls `doWrite`, which sends and unregisters it. For a websocket frame to an idle socket that is two
    selector updates and a loop turn per frame: in a daphne fanning one job out to 1,000 sockets, adding
    and removing writers was about a quarter of its busy samples (docs/BENCHMARKS.md). Here a write to a
    connection with an empty buffer goes straight to `writeSomeData` (one `send`); whatever the kernel
    does not take, and every write while data is queued, goes the usual buffered way, so order, producer
    pausing and slow readers behave as before.
    """
    from twisted.internet import tcp

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

    tcp.Connection.write = write


# Python's default gen-0 threshold (700 allocations) makes a daphne busy with websocket frames collect
# thousands of times a second, and each collection also ages objects into the older generations, whose
# passes over 1,000 connections' objects took up to 0.4 s (gc.callbacks timings while fanning one job out
# to 1,000 sockets: 1.9 s of collection in 25 s). 10x fewer young collections made that 0.1 s, with no
# full collection; gen 1/2 keep their defaults (and CPython's rule that a full pass waits until a quarter
# of the long-lived objects are new), so cyclic garbage is still reclaimed.
GC_THRESHOLDS = (7000, 10, 10)


def main() -> None:
    import gc

    gc.set_threshold(*GC_THRESHOLDS)
    from daphne.cli import CommandLineInterface

    install_optimistic_tcp_writes()

    sys.argv[0] = "daphne"
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
