"""Load shedding: a server admits at most ``max_in_flight`` RPCs at once (health and reflection
not counted). One more is refused at once with RESOURCE_EXHAUSTED and a retry hint in trailing
metadata (``retry-after-ms``), instead of queueing until every caller's deadline has passed. The
hint adapts so that callers who honour it come back at a quarter of the rate the server admits
calls: it starts at the recent mean time of an admitted call and, at most twice a second, is
multiplied by (refused / admitted) / ``TARGET_SHED_RATIO`` (bounded to [0.5, 2] per step, never
below the mean call time, at most ``MAX_RETRY_AFTER_S``). Refusing then costs about one cheap
call per four admitted ones, however many callers wait.

A call is also refused at once when, by the recent completion rate, the calls ahead of it would
clearly outlast its deadline (by half as much again: it would only end DEADLINE_EXCEEDED after
taking a slot). The project's
clients back off and retry it.

Prometheus: ``synesthesia_in_flight`` (admitted RPCs now) and ``synesthesia_shed_total``."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from grpc import aio
from prometheus_client import Counter, Gauge

from synesthesia.serving.handlers import PerMethod, around_calls
from synesthesia.serving.security import OPEN_PREFIXES

RETRY_AFTER_HEADER = "retry-after-ms"
MAX_RETRY_AFTER_S = 10.0
TARGET_SHED_RATIO = 0.25  # refused calls per admitted call the retry hint steers towards
_WARM_COMPLETIONS = 20  # completions seen before the deadline estimate is trusted
_RATE_TAU_S = 2.0  # time constant of the admitted / refused call rates

IN_FLIGHT = Gauge("synesthesia_in_flight", "RPCs admitted and not finished", ["server"])
SHED = Counter("synesthesia_shed_total", "RPCs refused with RESOURCE_EXHAUSTED", ["method"])


class AdmissionInterceptor(aio.ServerInterceptor):
    def __init__(self, max_in_flight: int, server: str) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._gauge = IN_FLIGHT.labels(server)
        self._mean_s = 0.05  # moving average of admitted calls' duration
        self._rates = {"admitted": 0.0, "shed": 0.0, "done": 0.0}  # per second, decaying
        self._completions = 0
        self._rates_at = time.monotonic()
        self._hint_s = self._mean_s
        self._hint_at = 0.0
        self._admitting = PerMethod(self._admit)

    def _count(self, kind: str | None) -> None:
        now = time.monotonic()
        decay = math.exp(-(now - self._rates_at) / _RATE_TAU_S)
        self._rates_at = now
        for k in self._rates:
            self._rates[k] *= decay
        if kind is not None:
            self._rates[kind] += 1 / _RATE_TAU_S

    def _retry_after_ms(self) -> int:
        now = time.monotonic()
        if now - self._hint_at >= 0.5:
            self._hint_at = now
            ratio = self._rates["shed"] / max(self._rates["admitted"], 1e-3)
            step = min(2.0, max(0.5, ratio / TARGET_SHED_RATIO))
            self._hint_s = min(MAX_RETRY_AFTER_S, max(self._mean_s, self._hint_s * step))
        return max(10, int(1000 * self._hint_s))

    def _too_late(self, context: aio.ServicerContext) -> bool:
        """The calls already admitted would, at the recent completion rate, outlast this call's
        deadline."""
        if self._completions < _WARM_COMPLETIONS or self.in_flight < 4:
            return False
        remaining = context.time_remaining()
        if remaining is None:
            return False
        self._count(None)  # decay the rates to now
        return self.in_flight / max(self._rates["done"], 1e-3) > 1.5 * remaining

    def _enter(self, context: aio.ServicerContext) -> bool:
        if self.in_flight >= self.max_in_flight or self._too_late(context):
            self._count("shed")
            return False
        self.in_flight += 1  # one event loop: no lock needed
        self._count("admitted")
        self._gauge.set(self.in_flight)
        return True

    def _leave(self, started: float) -> None:
        self.in_flight -= 1
        self._completions += 1
        self._count("done")
        self._gauge.set(self.in_flight)
        self._mean_s = 0.9 * self._mean_s + 0.1 * (time.perf_counter() - started)

    async def _refuse(self, context: aio.ServicerContext, method: str) -> None:
        SHED.labels(method).inc()
        context.set_trailing_metadata(((RETRY_AFTER_HEADER, str(self._retry_after_ms())),))
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the server is at capacity ({self.max_in_flight} calls in flight); retry after "
            f"{self._retry_after_ms()} ms",
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_PREFIXES):
            return handler
        return self._admitting(details.method, handler)

    def _admit(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        @contextlib.asynccontextmanager
        async def admitted(context: aio.ServicerContext) -> AsyncIterator[None]:
            if not self._enter(context):
                await self._refuse(context, method)
            started = time.perf_counter()
            try:
                yield
            finally:
                self._leave(started)

        return around_calls(handler, admitted)
