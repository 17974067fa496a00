"""Load shedding: past ``max_in_flight`` admitted calls a server answers RESOURCE_EXHAUSTED at once,
with a retry hint, instead of queueing; health stays answerable; capacity comes back."""

from __future__ import annotations

import asyncio
import threading

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from synesthesia.serving.admission import RETRY_AFTER_HEADER
from synesthesia.serving.server import ServiceSpec, build_server
from synesthesia.v1 import encoder_pb2, encoder_pb2_grpc

from tests.servers import running


class Blocking(encoder_pb2_grpc.EncoderServiceServicer):
    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = 0

    async def Embed(self, request, context):  # type: ignore[no-untyped-def]
        self.entered += 1
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        return encoder_pb2.EmbedResponse(model_id="m", dim=1)

    async def Info(self, request, context):  # type: ignore[no-untyped-def]
        return encoder_pb2.InfoResponse(model_id="m", dim=1)


def test_over_capacity_is_resource_exhausted_with_a_retry_hint() -> None:
    servicer = Blocking()

    async def start():  # type: ignore[no-untyped-def]
        server = await build_server(
            [
                ServiceSpec(
                    servicer,
                    encoder_pb2_grpc.add_EncoderServiceServicer_to_server,
                    "synesthesia.v1.EncoderService",
                )
            ],
            max_in_flight=2,
        )
        await server.set_serving(True)
        return server, None

    with running(start) as (server, _), grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = encoder_pb2_grpc.EncoderServiceStub(ch)
        held = [stub.Embed.future(encoder_pb2.EmbedRequest(), timeout=30) for _ in range(2)]
        while servicer.entered < 2:
            threading.Event().wait(0.01)
        try:
            stub.Info(encoder_pb2.InfoRequest(), timeout=5)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
            trailing = dict(err.trailing_metadata())  # type: ignore[attr-defined]
            assert int(trailing[RETRY_AFTER_HEADER]) >= 10
            assert "capacity" in err.details()  # type: ignore[attr-defined]
        else:
            raise AssertionError("a third call was admitted past max_in_flight=2")
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        servicer.release.set()
        assert all(f.result().model_id == "m" for f in held)
        assert stub.Info(encoder_pb2.InfoRequest(), timeout=5).model_id == "m"


def test_a_call_whose_deadline_the_queue_would_outlast_is_refused_at_once() -> None:
    import time

    from synesthesia.serving.admission import AdmissionInterceptor

    class Ctx:
        def __init__(self, remaining: float | None) -> None:
            self.remaining = remaining

        def time_remaining(self) -> float | None:
            return self.remaining

    gate = AdmissionInterceptor(max_in_flight=100, server="test")
    assert gate._enter(Ctx(0.001))  # type: ignore[arg-type]  # cold: no estimate yet
    gate._completions, gate.in_flight = 50, 10
    gate._rates["done"], gate._rates_at = 5.0, time.monotonic()  # 10 ahead at 5/s: 2 s
    assert not gate._enter(Ctx(1.0))  # type: ignore[arg-type]  # 2 s > 1.5 x 1 s
    assert gate._enter(Ctx(1.5))  # type: ignore[arg-type]
    assert gate._enter(Ctx(None))  # type: ignore[arg-type]  # no deadline: admitted
