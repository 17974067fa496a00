"""``synesthesia serve ray``: start (or join) Ray, start Serve's gRPC proxy with the synesthesia
protos and deploy the chosen services, then wait for SIGTERM/SIGINT. For config-driven
deployments use ``serve run services/ray/serve_config.yaml`` (or KubeRay's serveConfigV2)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from synesthesia.serving.context import configure_logging

SERVICES = ("text", "image", "audio", "search")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="synesthesia serve ray",
        description="Run the services as Ray Serve applications behind Ray's gRPC proxy.",
    )
    p.add_argument(
        "--services",
        default="text,image,audio,search",
        help="comma-separated applications to deploy (default: all four)",
    )
    p.add_argument("--port", type=int, default=9000, help="Ray Serve gRPC proxy port")
    p.add_argument("--host", default="127.0.0.1", help="Ray Serve HTTP bind address")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--address", default=None, help="Ray cluster address; default: start one")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray")
    p.add_argument("--object-store-mb", type=int, default=None, help="local Ray object store")
    p.add_argument("--model", default="synesthesia-minilm")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--shards", type=int, default=3, help="search shards")
    p.add_argument("--data-dir", type=Path, default=Path("data/ray-index"))
    p.add_argument("--max-replicas", type=int, default=2, help="per encoder")
    p.add_argument("--log-level", default="INFO")
    return p


def cli_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    services = [s.strip() for s in args.services.split(",") if s.strip()]
    unknown = sorted(set(services) - set(SERVICES))
    if unknown or not services:
        print(f"error: unknown services {unknown}; choose from {SERVICES}", file=sys.stderr)
        return 2
    configure_logging(args.log_level)

    from synesthesia.services.encoder.config import EncoderConfig
    from synesthesia.services.ray.args import AppArgs, Scaling, SearchOptions
    from synesthesia.services.ray.runtime import deploy, init_ray, shutdown, start_serve

    apps = [
        AppArgs(
            service=s,  # type: ignore[arg-type]
            encoder=EncoderConfig(model=args.model, checkpoint=args.checkpoint),
            search=SearchOptions(shards=args.shards, data_dir=args.data_dir),
            scaling=Scaling(max_replicas=args.max_replicas),
        )
        for s in services
    ]
    object_store = args.object_store_mb * 1024 * 1024 if args.object_store_mb else None
    init_ray(args.address, args.num_cpus, object_store)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        start_serve(args.port, args.host, args.http_port)
        took = deploy(apps)
        for name, seconds in took.items():
            print(f"{name}: RUNNING after {seconds:.1f} s", flush=True)
        header = "" if len(apps) == 1 else " with metadata application=<service>"
        print(f"Ray Serve gRPC proxy on port {args.port}{header}", flush=True)
        stop.wait()
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
