"""Run real gRPC servers in-process on loopback (port 0), each on a private event loop in a
background thread, so synchronous tests can call them through the generated stubs; and
``unused_port`` for a server that must come up (again) on a port known beforehand."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_GIVEN: set[int] = set()


def unused_port() -> int:
    """A free loopback port below the kernel's ephemeral range, for a server started (or
    restarted) on a port chosen beforehand. A port of the ephemeral range (what binding port 0
    gives) can be taken while no server holds it, as the local port of any outgoing connection
    on the machine, even of a client retrying that very port (a TCP self-connection), and the
    server then fails to bind; a local port is never chosen below the range."""
    low = int(_PORT_RANGE.read_text().split()[0]) if _PORT_RANGE.exists() else 32768
    below = [p for p in range(max(1024, low - 12000), low) if p not in _GIVEN]
    for port in random.sample(below, min(200, len(below))):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)  # not given twice in this run, even before its server binds it
        return port
    with socket.socket() as s:  # no room below the range (set very low): the kernel's choice
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@contextmanager
def running(start: Callable[[], Awaitable[tuple[Any, Any]]]) -> Iterator[tuple[Any, Any]]:
    """``start`` returns (RunningServer, servicer-with-close); yields them, then shuts down."""
    lt = LoopThread()
    server, servicer = lt.run(start())
    try:
        yield server, servicer
    finally:
        lt.run(server.stop(0.5))
        if hasattr(servicer, "close"):
            lt.run(servicer.close())
        lt.close()
