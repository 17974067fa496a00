"""Start (or join) Ray, start Serve with the gRPC proxy mounting our protos, deploy the
applications. Shared by ``synesthesia serve ray``, the tests and the benchmark."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

import ray
from ray import serve
from synesthesia.services.ray.app import GRPC_SERVICER_FUNCTIONS, build_app
from synesthesia.services.ray.args import AppArgs

log = logging.getLogger(__name__)


def init_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    object_store_bytes: int | None = None,
) -> None:
    """Join the cluster at ``address`` ("auto" for a local ``ray start``) or start a local one."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, include_dashboard=False)
    else:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            object_store_memory=object_store_bytes,
        )


def start_serve(grpc_port: int = 9000, http_host: str = "127.0.0.1", http_port: int = 8000) -> None:
    """Serve's gRPC proxy listens on all interfaces ([::]:grpc_port); HTTP on http_host."""
    serve.start(
        http_options={"host": http_host, "port": http_port},
        grpc_options={"port": grpc_port, "grpc_servicer_functions": GRPC_SERVICER_FUNCTIONS},
    )


def deploy(apps: Sequence[AppArgs], timeout_s: float = 600.0) -> dict[str, float]:
    """Deploys one application per entry, named after its service; returns seconds to RUNNING."""
    started: dict[str, float] = {}
    t0 = time.perf_counter()
    for args in apps:
        serve.run(
            build_app(args), name=args.service, route_prefix=f"/{args.service}", blocking=False
        )
    pending = {a.service for a in apps}
    deadline = time.monotonic() + timeout_s
    while pending:
        statuses = serve.status().applications
        for name in list(pending):
            app = statuses.get(name)
            if app is not None and app.status == "RUNNING":
                started[name] = time.perf_counter() - t0
                pending.discard(name)
            elif app is not None and app.status == "DEPLOY_FAILED":
                raise RuntimeError(f"application {name!r} failed to deploy: {app.message}")
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"applications not RUNNING after {timeout_s} s: {sorted(pending)}")
        time.sleep(0.5)
    return started


def shutdown() -> None:
    serve.shutdown()
    ray.shutdown()
