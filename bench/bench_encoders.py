"""Throughput and latency of one encoder service under concurrent single-item requests, with
server-side micro-batching on (max batch 32) and off (max batch 1), measured in one run.

    .venv/bin/python bench/bench_encoders.py [--modality text] [--clients 32] [--requests 256]

Real gRPC servers on loopback, the ordinary client, the shipped model. Prints a markdown table
for docs/benchmarks.md; the ratio column is what to compare across machines.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synesthesia.client import EncoderClient
from synesthesia.modality import Modality
from synesthesia.services.encoder.app import start_encoder
from synesthesia.services.encoder.config import load_embedder
from synesthesia.services.encoder.settings import EncoderSettings
from synesthesia.services.encoder.warmup import synthetic_png, synthetic_wav

from tests.servers import running


def items(modality: Modality, n: int) -> list[str | bytes]:
    if modality is Modality.TEXT:
        return [f"a short sentence about item number {i} and a dog" for i in range(n)]
    if modality is Modality.IMAGE:
        return [synthetic_png(40 + i % 16) for i in range(n)]
    return [synthetic_wav(1.0 + (i % 5) * 0.5, freq_hz=200 + 10 * i) for i in range(n)]


def measure(modality: Modality, max_batch: int, clients: int, requests: int) -> dict[str, float]:
    settings = EncoderSettings(
        modality=modality, port=0, max_batch_size=max_batch, max_wait_ms=5 if max_batch > 1 else 0
    )
    embedder = load_embedder(settings, settings.modality)
    work = items(modality, requests)
    with running(lambda: start_encoder(settings, embedder)) as (server, _):
        target = f"127.0.0.1:{server.port}"
        with EncoderClient(target) as warm:
            warm.embed(modality, work[:4])
        calls_before = embedder.forward_calls
        latencies: list[float] = []
        clients_pool = [EncoderClient(target) for _ in range(clients)]

        def one(i: int) -> None:
            t = time.perf_counter()
            clients_pool[i % clients].embed(modality, [work[i]])
            latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, range(requests)))
        wall = time.perf_counter() - start
        for c in clients_pool:
            c.close()
    latencies.sort()
    return {
        "rps": requests / wall,
        "p50": statistics.median(latencies) * 1e3,
        "p95": latencies[int(0.95 * (len(latencies) - 1))] * 1e3,
        "forwards": embedder.forward_calls - calls_before,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modality", default="text", choices=[m.value for m in Modality])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=256)
    args = ap.parse_args()
    m = Modality(args.modality)
    off = measure(m, 1, args.clients, args.requests)
    on = measure(m, 32, args.clients, args.requests)
    print(
        f"{args.requests} single-item {m.value} requests from {args.clients} concurrent clients\n"
    )
    print("| batching | requests/s | p50 ms | p95 ms | forward passes |")
    print("|---|---|---|---|---|")
    for name, r in (("off (max batch 1)", off), ("on (max batch 32, 5 ms)", on)):
        print(
            f"| {name} | {r['rps']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['forwards']:.0f} |"
        )
    print(f"\nthroughput ratio on/off: {on['rps'] / off['rps']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
