"""Load benchmark: an encoder service (a real process) under N concurrent asyncio clients that do
not retry, each sending one fixed payload per call with a fixed deadline, for a fixed time. A
client whose call is shed (RESOURCE_EXHAUSTED) gives that request up and waits for the server's
``retry-after-ms`` hint before its next one.
Prints goodput (answered calls per second), p50/p99 latency of the answered calls, error counts
by status code and the server's RSS growth, for each client count, in one run.

    .venv/bin/python bench/bench_load.py --modality text --clients 32 512 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
from grpc import aio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synesthesia.modality import Modality  # noqa: E402
from synesthesia.protoconv import modality_to_proto  # noqa: E402
from synesthesia.serving.admission import RETRY_AFTER_HEADER  # noqa: E402
from synesthesia.serving.server import channel_options  # noqa: E402
from synesthesia.v1 import encoder_pb2, encoder_pb2_grpc  # noqa: E402

from tests import media_factory as mf  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def payload(modality: Modality) -> encoder_pb2.Item:
    if modality is Modality.TEXT:
        return encoder_pb2.Item(text="a dog barks at the postman while the kettle whistles")
    if modality is Modality.IMAGE:
        return encoder_pb2.Item(data=mf.png((224, 224), seed=1))
    return encoder_pb2.Item(data=mf.wav(2.0, freq_hz=440))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_serving(target: str, timeout: float = 180) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    async with aio.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while True:
            try:
                r = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(target)
            await asyncio.sleep(0.2)


async def load(
    target: str, modality: Modality, clients: int, seconds: float, deadline_s: float
) -> tuple[list[float], Counter[str]]:
    request = encoder_pb2.EmbedRequest(
        modality=modality_to_proto(modality), items=[payload(modality)]
    )
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    # several channels, as many independent clients would open
    channels = [
        aio.insecure_channel(target, options=channel_options()) for _ in range(min(clients, 16))
    ]
    stubs = [encoder_pb2_grpc.EncoderServiceStub(c) for c in channels]
    end = time.monotonic() + seconds

    async def client(i: int) -> None:
        stub = stubs[i % len(stubs)]
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                await stub.Embed(request, timeout=deadline_s)
                latencies.append(time.perf_counter() - t0)
                codes["OK"] += 1
            except aio.AioRpcError as err:
                codes[err.code().name] += 1
                if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    # not a retry: this request is given up; the client's NEXT request waits
                    # for the server's hint, as any well-behaved client does
                    hint = dict(err.trailing_metadata() or ()).get(RETRY_AFTER_HEADER)
                    await asyncio.sleep(min(10.0, int(hint or 100) / 1000))

    await asyncio.gather(*(client(i) for i in range(clients)))
    for c in channels:
        await c.close()
    return latencies, codes


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--modality", default="text", choices=[m.value for m in Modality])
    p.add_argument("--clients", type=int, nargs="+", default=[32, 512])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--deadline", type=float, default=2.0, help="per call, seconds")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    args = p.parse_args()
    modality = Modality(args.modality)
    port = free_port()
    env = {
        **os.environ,
        "SYNESTHESIA_PORT": str(port),
        "SYNESTHESIA_TORCH_THREADS": str(args.threads),
        "SYNESTHESIA_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", f"synesthesia.services.{modality.value}"], env=env
    )
    target = f"127.0.0.1:{port}"
    try:
        asyncio.run(wait_serving(target))
        asyncio.run(load(target, modality, 8, 3.0, args.deadline))  # warm up
        print(
            f"{modality.value} encoder, deadline {args.deadline:g} s, {args.seconds:g} s per row, "
            "clients do not retry"
        )
        print("| clients | goodput/s | p50 ms | p99 ms | errors by code | RSS before → after MB |")
        print("|---|---|---|---|---|---|")
        goodput: dict[int, float] = {}
        for n in args.clients:
            before = rss_mb(server.pid)
            lat, codes = asyncio.run(load(target, modality, n, args.seconds, args.deadline))
            after = rss_mb(server.pid)
            goodput[n] = codes["OK"] / args.seconds
            errors = {k: v for k, v in codes.items() if k != "OK"} or "none"
            p50, p99 = (np.percentile(lat, [50, 99]) * 1000) if lat else (float("nan"),) * 2
            print(
                f"| {n} | {goodput[n]:.1f} | {p50:.0f} | {p99:.0f} | {errors} | "
                f"{before:.0f} → {after:.0f} |"
            )
        first, *rest = args.clients
        for n in rest:
            print(
                f"goodput ratio {n} / {first} clients: {goodput[n] / max(goodput[first], 1e-9):.2f}"
            )
    finally:
        server.terminate()
        server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
