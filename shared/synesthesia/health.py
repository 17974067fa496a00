"""The one health probe: what a server reports through grpc.health.v1, and waiting until it
reports SERVING. Used by the healthcheck CLI, the local stack, the demo and the tests.

Health is open to every caller (no token), but a TLS server needs a TLS channel: ``tls`` is a
``synesthesia.client.TLS``, a CA file, True (system roots), False (plaintext) or None (from
``SYNESTHESIA_CLIENT_TLS_*``, else plaintext)."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from synesthesia.client._transport import TLSOption, resolve_tls

SERVING = "SERVING"


def _channel(target: str, tls: TLSOption) -> grpc.Channel:
    resolved = resolve_tls(tls)
    if resolved is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, resolved.credentials(), resolved.channel_options())


def health_status(
    target: str,
    service: str = "",
    application: str = "",
    timeout: float = 3.0,
    tls: TLSOption = None,
) -> str:
    """The status name ``target`` reports (e.g. "SERVING", "NOT_SERVING"), or the gRPC error
    code's name when it cannot answer (e.g. "UNAVAILABLE"). ``application`` picks the Ray Serve
    application behind a shared Ray gRPC proxy."""
    metadata = (("application", application),) if application else ()
    with _channel(target, tls) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout, metadata=metadata
            )
        except grpc.RpcError as err:
            code = err.code()  # type: ignore[attr-defined]
            return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def wait_for_serving(
    target: str,
    timeout: float = 60.0,
    service: str = "",
    application: str = "",
    interval: float = 0.1,
    tls: TLSOption = None,
) -> None:
    """Block until ``target`` reports SERVING; TimeoutError (naming the last status) after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        status = health_status(target, service, application, timeout=min(2.0, timeout), tls=tls)
        if status == SERVING:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{target} did not report SERVING within {timeout:g} s ({status})")
        time.sleep(interval)
