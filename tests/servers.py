"""Run real gRPC servers in-process on loopback (port 0), each on a private event loop in a
background thread, so synchronous tests can call them through the generated stubs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


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
