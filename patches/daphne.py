"""`python -m patches.daphne …`: daphne (same arguments, same ASGI application), tuned for many websockets.

Five changes to stock daphne: Twisted's optimistic TCP writes (patches/twisted_tcp.py), websockets with a
cap on unsent bytes and a keep-alive a chatty peer cannot skip (patches/daphne_websocket.py), request bodies
over the limit refused before they are read (patches/daphne_body_limit.py), response bodies that wait for
slow clients (patches/daphne_backpressure.py) and a lighter input queue per connection
(patches/daphne_input_queue.py); and a higher gen-0 garbage-collection threshold. README,
Procfile, compose.yaml and the Dockerfile run web processes this way;
bench/ws_fanout.py measures it against stock `daphne` (docs/BENCHMARKS.md).
"""
from __future__ import annotations

import gc
import sys

from . import daphne_websocket
from .daphne_backpressure import install_http_backpressure
from .daphne_body_limit import install_body_limit
from .daphne_input_queue import install_light_input_queues
from .twisted_tcp import install_optimistic_tcp_writes

# A daphne busy with websocket frames runs Python's default gen-0 collection (every 700 allocations)
# thousands of times a second, and each one ages objects into the older generations, whose passes over
# every connection's objects were its p99 (docs/BENCHMARKS.md, "Garbage collection"). 10x fewer young
# collections; gen 1/2 keep their defaults (and CPython's rule that a full pass waits until a quarter of
# the long-lived objects are new), so cyclic garbage is still reclaimed.
GC_THRESHOLDS = (7000, 10, 10)


def main() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    from daphne.cli import CommandLineInterface

    install_optimistic_tcp_writes()
    daphne_websocket.install()
    install_http_backpressure()
    install_body_limit()
    install_light_input_queues()
    sys.argv[0] = "daphne"
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
