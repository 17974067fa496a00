"""``synesthesia healthcheck HOST:PORT`` (or ``python -m synesthesia.apps.healthcheck``): exit 0
when the server reports SERVING through grpc.health.v1, 1 otherwise. Used by docker-compose
health checks and the Ray profile (where ``--application`` names the Ray Serve application
behind a shared gRPC proxy). A TLS server needs ``--tls-ca`` (health needs no token)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from synesthesia.apps.client_args import tls_of
from synesthesia.health import SERVING, health_status


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m synesthesia.apps.healthcheck", description=__doc__)
    p.add_argument("target", help="host:port")
    p.add_argument("--service", default="", help="service name to check (default: the server)")
    p.add_argument("--application", default="", help="Ray Serve application (Ray gRPC proxy)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds per check")
    p.add_argument("--wait", type=float, default=0.0, help="keep trying this many seconds")
    p.add_argument("--tls-ca", type=Path, help="CA file: the server speaks TLS")
    p.add_argument("--tls-cert", type=Path, help="client certificate (a server requiring mTLS)")
    p.add_argument("--tls-key", type=Path, help="key of --tls-cert")
    args = p.parse_args(argv)
    tls = tls_of(args)  # None: SYNESTHESIA_CLIENT_TLS_*; health needs no token
    deadline = time.monotonic() + args.wait
    while True:
        status = health_status(args.target, args.service, args.application, args.timeout, tls)
        if status == SERVING or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    print(f"{args.target}: {status}")
    return 0 if status == SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
