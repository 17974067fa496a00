"""``build_server``: one way to make a gRPC server with health, reflection, the interceptor and
message-size limits; ``serve_forever``: run it until SIGTERM/SIGINT, then drain gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from synesthesia.serving.admission import AdmissionInterceptor
from synesthesia.serving.interceptors import ServerInterceptor
from synesthesia.serving.reflection import enable_reflection
from synesthesia.serving.security import (
    SecuritySettings,
    check_exposure,
    server_credentials,
    server_interceptors,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


KEEPALIVE_MS = 30_000


def channel_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    """Client options: message limits equal to the servers', keepalive pings every 30 s."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def server_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    """Server options: the same message limits, and clients' 30 s keepalive pings accepted
    (gRPC's default would answer them with GOAWAY "too_many_pings")."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_MS // 2),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.so_reuseport", 0),
    ]


@dataclass
class ServiceSpec:
    """A servicer and how to mount it: ``add(servicer, server)`` and its full service name."""

    servicer: Any
    add: Callable[[Any, aio.Server], None]
    name: str


@dataclass
class RunningServer:
    server: aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: tuple[str, ...]

    async def set_serving(self, serving: bool = True) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in (*self.service_names, ""):
            await self.health.set(name, status)

    async def stop(self, grace: float | None = 5.0) -> None:
        await self.set_serving(False)
        await self.server.stop(grace)


async def build_server(
    services: Sequence[ServiceSpec],
    host: str = "127.0.0.1",
    port: int = 0,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    security: SecuritySettings | None = None,
    max_in_flight: int | None = None,
) -> RunningServer:
    """Create and start a server; health starts NOT_SERVING until the caller has warmed up and
    calls ``set_serving()``. Port 0 picks a free port (returned). ``security``: TLS/mTLS and
    bearer tokens (serving/security.py); a non-loopback ``host`` with neither is refused unless
    it says ``insecure``. ``max_in_flight``: RPCs admitted at once, more are refused with
    RESOURCE_EXHAUSTED (serving/admission.py); None: no limit."""
    security = security or SecuritySettings()
    check_exposure(host, security)
    credentials = server_credentials(security)
    server = aio.server(
        interceptors=[
            ServerInterceptor(),
            *server_interceptors(security),  # before admission: a refused token takes no slot
            *([AdmissionInterceptor(max_in_flight, f"{host}:{port}")] if max_in_flight else []),
        ],
        options=server_options(max_message_bytes),
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for spec in services:
        spec.add(spec.servicer, server)
    names = tuple(spec.name for spec in services)
    enable_reflection((*names, health.SERVICE_NAME), server)
    address = f"{host}:{port}"
    if credentials is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, credentials)
    if bound == 0:
        raise OSError(f"could not bind {host}:{port}")
    running = RunningServer(server, bound, health_servicer, names)
    await running.set_serving(False)
    await server.start()
    log.info(
        "listening on %s:%d (%s; %s%s)",
        host,
        bound,
        ", ".join(names),
        "mTLS" if security.tls_client_ca else "TLS" if credentials else "plaintext",
        ", bearer tokens" if security.tokens_file else "",
    )
    return running


async def serve_forever(
    start: Callable[[], Awaitable[RunningServer]],
    grace_seconds: float = 10.0,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Start via ``start()``, then wait for SIGTERM/SIGINT: report NOT_SERVING, stop accepting
    new RPCs and let in-flight ones finish for up to ``grace_seconds``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await start()
    await stop.wait()
    log.info("draining (grace %.1f s)", grace_seconds)
    await running.stop(grace_seconds)
    if on_stop is not None:
        await on_stop()
    log.info("stopped")
