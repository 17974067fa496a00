"""The clients' resilience against a scripted encoder service on loopback: RESOURCE_EXHAUSTED and
UNAVAILABLE retried with backoff (the server's ``retry-after-ms`` hint honoured), no retry past
``max_retries`` or of what is not retryable, wait-for-ready for a server that comes up late, the
asyncio client's bounded concurrency, per-call ``batch_size`` and errors in the caller's
numbering."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from synesthesia.client import AsyncEncoderClient, EncoderClient, Retry
from synesthesia.errors import InvalidInput, ResourceExhausted, Unavailable
from synesthesia.v1 import encoder_pb2, encoder_pb2_grpc

from tests.servers import running, unused_port

DIM = 4


class Scripted(encoder_pb2_grpc.EncoderServiceServicer):
    """Fails the first ``fail`` calls with ``code`` (and a retry hint); refuses an item whose
    text is "bad" the way the real servers do ('item <i in the request> (id ...)')."""

    def __init__(self) -> None:
        self.fail, self.code, self.hint_ms = 0, grpc.StatusCode.RESOURCE_EXHAUSTED, 0
        self.calls: list[float] = []
        self.sizes: list[int] = []
        self.in_flight = self.peak = 0
        self.delay = 0.0

    async def Embed(self, request: Any, context: Any) -> Any:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.fail:
            if self.hint_ms:
                context.set_trailing_metadata((("retry-after-ms", str(self.hint_ms)),))
            await context.abort(self.code, "scripted failure")
        for i, item in enumerate(request.items):
            if item.text == "bad":
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"item {i} (id {item.id!r}): bad words"
                )
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        self.sizes.append(len(request.items))
        return encoder_pb2.EmbedResponse(
            model_id="scripted",
            dim=DIM,
            embeddings=[
                encoder_pb2.Embedding(values=[1.0, 0, 0, 0], id=x.id) for x in request.items
            ],
        )


class _Server:
    def __init__(self, server: grpc.aio.Server) -> None:
        self.server = server

    async def stop(self, grace: float) -> None:
        await self.server.stop(grace)


def _start(servicer: Scripted, port: int) -> Any:
    async def start() -> tuple[_Server, Scripted]:
        server = grpc.aio.server()
        encoder_pb2_grpc.add_EncoderServiceServicer_to_server(servicer, server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        return _Server(server), servicer

    return running(start)


@pytest.fixture
def scripted() -> Iterator[tuple[str, Scripted]]:
    port, servicer = unused_port(), Scripted()
    with _start(servicer, port):
        yield f"127.0.0.1:{port}", servicer


FAST = Retry(max_retries=4, initial_backoff=0.05, max_backoff=0.2)


def test_resource_exhausted_is_retried_after_the_servers_hint(
    scripted: tuple[str, Scripted],
) -> None:
    target, s = scripted
    s.fail, s.hint_ms = 2, 300
    with EncoderClient(target, retry=FAST, timeout=30) as c:
        assert c.embed("text", ["a dog"]).shape == (1, DIM)
    assert len(s.calls) == 3
    gaps = [b - a for a, b in zip(s.calls, s.calls[1:], strict=False)]
    assert min(gaps) >= 0.29, gaps  # never sooner than the server asked


def test_unavailable_is_retried_with_backoff_up_to_max_retries(
    scripted: tuple[str, Scripted],
) -> None:
    target, s = scripted
    s.fail, s.code = 10, grpc.StatusCode.UNAVAILABLE
    with EncoderClient(target, retry=FAST, max_retries=2) as c, pytest.raises(Unavailable):
        c.embed("text", ["a dog"])
    assert len(s.calls) == 3  # the call and two retries
    s.calls.clear()
    s.fail, s.code = 1, grpc.StatusCode.RESOURCE_EXHAUSTED
    with EncoderClient(target, max_retries=0) as c, pytest.raises(ResourceExhausted):
        c.embed("text", ["a dog"])
    assert len(s.calls) == 1


def test_a_refused_item_is_not_retried_and_is_named_in_the_callers_numbering(
    scripted: tuple[str, Scripted],
) -> None:
    target, s = scripted
    texts = [f"t{i}" for i in range(130)]
    texts[120] = "bad"
    with EncoderClient(target, batch_size=100) as c, pytest.raises(InvalidInput) as err:
        c.embed("text", texts, ids=[f"id{i}" for i in range(130)], batch_size=50)
    assert err.value.index == 120 and err.value.message == "item 120 (id 'id120'): bad words"
    assert s.sizes == [50, 50] and len(s.calls) == 3  # per-call batch_size; refused once
    with EncoderClient(target) as c, pytest.raises(InvalidInput) as local:
        c.embed("image", [b"png", 3.5])  # type: ignore[list-item]
    assert local.value.index == 1 and local.value.message.startswith("item 1: cannot use a float")


def test_wait_for_ready_waits_for_a_server_that_comes_up_late() -> None:
    port, servicer = unused_port(), Scripted()
    started = threading.Event()

    def later() -> None:
        time.sleep(1.5)
        with _start(servicer, port):
            started.set()
            time.sleep(10)

    threading.Thread(target=later, daemon=True).start()
    t0 = time.monotonic()
    with EncoderClient(f"127.0.0.1:{port}", timeout=30) as c:
        assert c.embed("text", ["a dog"]).shape == (1, DIM)
    assert started.is_set() and time.monotonic() - t0 >= 1.4
    # without wait-for-ready (and no retries) a refused port fails at once, as UNAVAILABLE
    t0 = time.monotonic()
    with (
        EncoderClient(f"127.0.0.1:{unused_port()}", wait_for_ready=False, max_retries=0) as c,
        pytest.raises(Unavailable),
    ):
        c.info()
    assert time.monotonic() - t0 < 5
    # with it, a server that never comes is UNAVAILABLE (not a bare deadline) after the timeout
    with (
        EncoderClient(f"127.0.0.1:{unused_port()}", timeout=1.5) as c,
        pytest.raises(Unavailable, match=r"could not be reached within 1\.5 s"),
    ):
        c.info()


def test_async_client_bounds_its_chunks_in_flight(scripted: tuple[str, Scripted]) -> None:
    target, s = scripted
    s.delay = 0.2

    async def go() -> Any:
        async with AsyncEncoderClient(target, batch_size=2, max_concurrency=3) as c:
            return await c.embed("text", [f"t{i}" for i in range(20)], show_progress=True)

    assert asyncio.run(go()).shape == (20, DIM)
    assert s.peak == 3 and len(s.sizes) == 10
