"""Ray Serve autoscaling of an encoder deployment: 1 replica -> 2 under a burst -> back to 1.

    python bench/bench_ray_autoscale.py                   # local Ray, 2 CPUs, text encoder
    python bench/bench_ray_autoscale.py --burst-s 40 --clients 12

Starts a local Ray (2 CPUs, 200 MB object store), deploys the text encoder with autoscaling
(min 1, max 2, target_ongoing_requests 1, short delays so the run stays short), sends a burst
of concurrent Embed calls through Ray's gRPC proxy with the ordinary EncoderClient, and polls
the deployment's replica states. Prints the timeline (seconds since the burst started) and a
markdown row for docs/benchmarks.md. The burst is bounded in time; all traffic is loopback."""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def replica_states() -> Counter[str]:
    from ray import serve

    app = serve.status().applications.get("text")
    if app is None or "TextEncoder" not in app.deployments:
        return Counter()
    return Counter(
        {str(k): int(v) for k, v in app.deployments["TextEncoder"].replica_states.items()}
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8, help="concurrent callers during the burst")
    p.add_argument("--burst-s", type=float, default=30.0, help="burst length (bounded)")
    p.add_argument("--items", type=int, default=16, help="texts per request")
    p.add_argument("--downscale-delay-s", type=float, default=10.0)
    p.add_argument("--timeout-s", type=float, default=180.0, help="give up waiting after this")
    args = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    from synesthesia.client import EncoderClient
    from synesthesia.services.ray.args import AppArgs, Scaling
    from synesthesia.services.ray.runtime import deploy, init_ray, shutdown, start_serve

    t0 = time.perf_counter()
    init_ray(num_cpus=2, object_store_bytes=200 * 1024 * 1024)
    port = free_port()
    try:
        start_serve(grpc_port=port, http_port=free_port())
        scaling = Scaling(
            num_cpus=0.5,
            min_replicas=1,
            max_replicas=2,
            target_ongoing_requests=1,
            upscale_delay_s=1.0,
            downscale_delay_s=args.downscale_delay_s,
        )
        deploy([AppArgs(service="text", scaling=scaling)])
        print(f"Ray + text encoder (1 replica) up in {time.perf_counter() - t0:.1f} s")
        texts = [
            f"sentence {i}: a dog barks while rain falls on a tin roof" for i in range(args.items)
        ]
        target = f"127.0.0.1:{port}"
        stop = threading.Event()
        done = Counter[str]()

        def caller() -> None:
            with EncoderClient(target, timeout=60) as client:  # one app: no metadata needed
                while not stop.is_set():
                    client.embed("text", texts)
                    done["requests"] += 1

        events: list[tuple[float, str]] = []
        start = time.perf_counter()
        seen: Counter[str] = replica_states()

        def observe() -> Counter[str]:
            nonlocal seen
            states = replica_states()
            if states != seen:
                shown = ", ".join(f"{k}={v}" for k, v in sorted(states.items()))
                events.append((time.perf_counter() - start, f"replicas {shown}"))
                seen = states
            return states

        with ThreadPoolExecutor(args.clients) as pool:
            for _ in range(args.clients):
                pool.submit(caller)
            while time.perf_counter() - start < args.burst_s:
                observe()
                time.sleep(0.25)
            stop.set()
        burst_end = time.perf_counter() - start
        events.append((burst_end, f"burst ends ({done['requests']} requests served)"))
        while time.perf_counter() - start < burst_end + args.timeout_s:
            states = observe()
            if states.get("RUNNING", 0) == 1 and sum(states.values()) == 1:
                break
            time.sleep(0.25)
        print("timeline (s since the burst started):")
        for t, what in events:
            print(f"  {t:7.1f}  {what}")
        up = next((t for t, w in events if "RUNNING=2" in w), None)
        down = next((t for t, w in events if t > burst_end and w == "replicas RUNNING=1"), None)
        up_s = f"{up:.1f}" if up is not None else "never"
        down_s = f"{down - burst_end:.1f}" if down is not None else "never"
        print(
            "| clients | burst s | requests | 1->2 replicas after s | 2->1 after burst end s |\n"
            "|---|---|---|---|---|\n"
            f"| {args.clients} | {args.burst_s:.0f} | {done['requests']} | {up_s} | {down_s} |"
        )
    finally:
        shutdown()


if __name__ == "__main__":
    main()
