"""``python -m synesthesia.healthcheck HOST:PORT``: exit 0 when the server reports SERVING through
grpc.health.v1, 1 otherwise. Used by docker-compose health checks and the Ray profile (where
``--application`` names the Ray Serve application behind a shared gRPC proxy)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, service: str = "", application: str = "", timeout: float = 3.0) -> str:
    """The status name reported by ``target`` (e.g. "SERVING"), or the gRPC error code name."""
    metadata = (("application", application),) if application else ()
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout, metadata=metadata
            )
        except grpc.RpcError as err:
            code = err.code()  # type: ignore[attr-defined]
            return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m synesthesia.healthcheck", description=__doc__)
    p.add_argument("target", help="host:port")
    p.add_argument("--service", default="", help="service name to check (default: the server)")
    p.add_argument("--application", default="", help="Ray Serve application (Ray gRPC proxy)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds per check")
    p.add_argument("--wait", type=float, default=0.0, help="keep trying this many seconds")
    args = p.parse_args(argv)
    deadline = time.monotonic() + args.wait
    while True:
        status = check(args.target, args.service, args.application, args.timeout)
        if status == "SERVING" or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    print(f"{args.target}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
