"""Server-side micro-batching across concurrent requests.

Requests submit already-prepared items; one background task collects items until
``max_batch`` (counted in model rows, e.g. audio windows) or the wait has passed since the first
item (``max_wait``, or a tenth of the recent forward pass's duration if that is longer: a model
that takes seconds per pass waits long enough for a burst to arrive, at a tenth of its own
cost), skips items whose caller has gone (cancelled / deadline exceeded), and runs ONE
model forward pass in a dedicated thread, so the event loop keeps accepting requests meanwhile.

``workers`` forward passes may run at once, each in its own thread (on a CPU, several
single-threaded passes in parallel keep the cores busier than one pass split over threads:
docs/benchmarks.md); while all are busy, the next batch keeps filling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from synesthesia.models.embedder import Prepared

log = logging.getLogger(__name__)

#: the wait for a batch to fill stretches to this share of the recent forward pass's duration
WAIT_SHARE_OF_PASS = 0.1


@dataclass
class _Pending:
    prepared: Prepared
    future: asyncio.Future[np.ndarray]


class MicroBatcher:
    def __init__(
        self,
        encode: Callable[[Sequence[Prepared]], np.ndarray],
        max_batch: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] | None = None,
        workers: int = 1,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self._encode = encode
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.workers = workers
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="model")
        self._free = asyncio.Semaphore(workers)
        self._forwards: set[asyncio.Task[None]] = set()
        self.pass_s = 0.0  # moving average of a forward pass's duration
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._forwards:  # forward passes already running finish and deliver
            await asyncio.gather(*self._forwards, return_exceptions=True)
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def submit(self, prepared: Sequence[Prepared]) -> np.ndarray:
        """Embed ``prepared`` (one request's items) together with whatever else is queued."""
        self.start()
        loop = asyncio.get_running_loop()
        pending = [_Pending(p, loop.create_future()) for p in prepared]
        for p in pending:
            self._queue.put_nowait(p)
        try:
            rows = await asyncio.gather(*(p.future for p in pending))
        except BaseException:
            for p in pending:
                p.future.cancel()
            raise
        return np.stack(rows)

    async def _collect(self) -> list[_Pending]:
        first = await self._queue.get()
        batch, cost = [first], first.prepared.windows
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(self.max_wait_s, WAIT_SHARE_OF_PASS * self.pass_s)
        while cost < self.max_batch:
            try:
                nxt = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            batch.append(nxt)
            cost += nxt.prepared.windows
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._free.acquire()  # a worker is free: the batch fills until then
            try:
                batch = [p for p in await self._collect() if not p.future.done()]
            except BaseException:
                self._free.release()
                raise
            if not batch:
                self._free.release()
                continue
            if self._on_batch is not None:
                self._on_batch(len(batch))
            task = loop.create_task(self._forward(batch))
            self._forwards.add(task)
            task.add_done_callback(self._forwards.discard)

    async def _forward(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            vectors = await loop.run_in_executor(
                self._executor, self._encode, [p.prepared for p in batch]
            )
            took = loop.time() - started
            self.pass_s = took if not self.pass_s else 0.8 * self.pass_s + 0.2 * took
        except Exception as exc:  # a model failure fails this batch, not the batcher
            log.exception("batch of %d items failed", len(batch))
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        finally:
            self._free.release()
        for p, row in zip(batch, vectors, strict=True):
            if not p.future.done():
                p.future.set_result(row)
