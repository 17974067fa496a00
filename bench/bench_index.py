"""Recall@10 against exact search and query latency of the index kinds, through the collection API
or (``--grpc``) through the search service with its default settings.

    python bench/bench_index.py                      # 100k x 384, clustered vectors
    python bench/bench_index.py --data uniform       # isotropic noise: the worst case for ANN
    python bench/bench_index.py --n 20000 --kinds hnsw ivf-pq
    python bench/bench_index.py --grpc --n 1000000 --kinds hnsw   # the service, no index params

Prints a markdown table (one row per index kind) for docs/benchmarks.md. Build time includes the
SQLite commits (synchronous=NORMAL here) and, for ivf-pq, training. Latency is one query at a
time, one FAISS thread, including filter-free result assembly; "filtered" runs the same queries
with a metadata filter that keeps 2 % of the items.

``--grpc`` starts ``synesthesia.services.search`` in a child process (a temporary data
directory, no encoders, no TLS or tokens, every other setting its default: SQLite
synchronous=FULL, snapshots every 60 s), creates each collection with the kind only — no
index params, so the service's defaults (``default`` = no kind either, what a client that says
nothing gets) — and streams the vectors with the SDK (``SearchClient.upsert_stream``, 1,000 a
chunk). Build time runs from the first chunk sent to the last acknowledged, plus the wait until
the service has calibrated the collection at (within 2 % of) its final size, polled through
DescribeCollection. Latency is one client, one query at a time, over gRPC."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np
from synesthesia.index import IndexManager, UpsertItem

PARAMS = {
    "flat": {},
    "hnsw": {"M": 24, "ef_construction": 64, "ef_search": 96},
    "ivf-pq": {"nlist": 1024, "m": 48, "nbits": 8, "nprobe": 32},
}


def make_data(kind: str, n: int, nq: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)

    def unit(a: np.ndarray) -> np.ndarray:
        return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)

    if kind == "uniform":
        return unit(rng.standard_normal((n, dim))), unit(rng.standard_normal((nq, dim)))
    centres = unit(rng.standard_normal((1000, dim)))

    def draw(m: int) -> np.ndarray:
        return unit(centres[rng.integers(0, 1000, m)] + 0.1 * rng.standard_normal((m, dim)))

    return draw(n), draw(nq)


FILTER = {"metadata": {"b": 7}}  # keeps 2 % of the items (metadata b = i % 50)


def time_queries(
    query: Callable[[np.ndarray, dict | None], list[str]],
    snapshot: Callable[[], object],
    queries: np.ndarray,
    truth: np.ndarray,
    k: int,
) -> dict:
    """Recall@k against ``truth`` and latency (p50/p95; p50 with FILTER over 100 queries) of
    ``query(vector, filter) -> ids``, one at a time; then how long ``snapshot()`` takes."""
    lat, got = [], []
    for q in queries:
        t = time.perf_counter()
        got.append([int(i) for i in query(q, None)])
        lat.append(time.perf_counter() - t)
    filtered = []
    for q in queries[:100]:
        t = time.perf_counter()
        query(q, FILTER)
        filtered.append(time.perf_counter() - t)
    t = time.perf_counter()
    snapshot()
    snap = time.perf_counter() - t
    return {
        "recall": np.mean([len(set(g) & set(t)) / k for g, t in zip(got, truth, strict=True)]),
        "p50": np.percentile(lat, 50) * 1e3,
        "p95": np.percentile(lat, 95) * 1e3,
        "filtered_p50": np.percentile(filtered, 50) * 1e3,
        "snapshot_s": snap,
    }


def run(kind: str, x: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, IndexManager(tmp, synchronous="NORMAL") as mgr:
        mgr.create_collection("b", x.shape[1], kind=kind, params=PARAMS[kind])
        coll = mgr.collection("b")
        t0 = time.perf_counter()
        for s in range(0, len(x), 10_000):
            coll.upsert(
                [
                    UpsertItem(str(i), x[i], "image", {"b": i % 50})
                    for i in range(s, min(len(x), s + 10_000))
                ]
            )
        build = time.perf_counter() - t0
        timed = time_queries(
            lambda q, flt: [h.id for h in coll.query(q, k, flt)], coll.snapshot, queries, truth, k
        )
        info = coll.describe()  # after the snapshot, so its file counts in bytes_on_disk
    return {
        "kind": kind,
        "params": PARAMS[kind],
        "build_s": build,
        **timed,
        "disk_mb": info.bytes_on_disk / 2**20,
    }


@contextmanager
def search_service(data_dir: Path, log_path: Path) -> Iterator[str]:
    """``python -m synesthesia.services.search`` on a free loopback port; yields its target."""
    import socket

    from synesthesia.health import wait_for_serving

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNESTHESIA_")}
    env.update(
        SYNESTHESIA_PORT=str(port),
        SYNESTHESIA_DATA_DIR=str(data_dir),
        SYNESTHESIA_TEXT_ENCODER="",
        SYNESTHESIA_IMAGE_ENCODER="",
        SYNESTHESIA_AUDIO_ENCODER="",
    )
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "synesthesia.services.search"], env=env, stderr=log
        )
    try:
        target = f"127.0.0.1:{port}"
        wait_for_serving(target, timeout=120, tls=False)
        yield target
    finally:
        proc.terminate()
        proc.wait(timeout=600)  # a clean stop writes the final snapshot


def run_grpc(
    kind: str, x: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int, log_path: Path
) -> dict:
    from synesthesia.client import Item, SearchClient

    n = len(x)
    with (
        tempfile.TemporaryDirectory() as tmp,
        search_service(Path(tmp), log_path) as target,
        SearchClient(target, tls=False, token="", timeout=600) as client,
    ):
        made = client.create_collection(
            "b", dim=x.shape[1], **({} if kind == "default" else {"index": kind})
        )
        items = (
            Item(str(i), vector=x[i], modality="image", metadata={"b": i % 50}) for i in range(n)
        )
        t0 = time.perf_counter()
        for _ in client.upsert_stream("b", items, batch_size=1000):
            pass
        ingest = time.perf_counter() - t0
        info = client.describe_collection("b")
        while info.search_effort and info.calibrated_count < 0.98 * n:
            time.sleep(0.2)
            info = client.describe_collection("b")
        build = time.perf_counter() - t0
        for q in queries[:20]:  # warm-up
            client.query("b", vector=q, k=k)
        timed = time_queries(
            lambda q, flt: [h.id for h in client.query("b", vector=q, k=k, filter=flt)],
            lambda: client.snapshot("b"),
            queries,
            truth,
            k,
        )
        info = client.describe_collection("b")
    return {
        "kind": made.index,
        "params": made.index_params,
        "build_s": build,
        "ingest_s": ingest,
        **timed,
        "disk_mb": info.bytes_on_disk / 2**20,
        "effort": info.search_effort,
        "measured": info.measured_recall,
        "calibrated_count": info.calibrated_count,
    }


def print_table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


def params_text(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "-"


def grpc_cells(r: dict, n: int) -> list[str]:
    measured = f"{r['measured']:.3f} ({r['calibrated_count']:,})" if r["effort"] else "exact"
    return [
        r["kind"],
        params_text(r["params"]),
        f"{n:,}",
        f"{r['build_s']:.1f} ({r['ingest_s']:.1f})",
        f"{r['recall']:.3f}",
        f"{r['p50']:.2f}",
        f"{r['p95']:.2f}",
        f"{r['filtered_p50']:.2f}",
        str(r["effort"] or "-"),
        measured,
    ]


GRPC_HEADER = (
    "index (as created)|default params|n|build s (ingest s)|recall@10|p50 ms|p95 ms"
    "|filtered (2 %) p50 ms|effort in use|measured recall (at n)"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--data", choices=["mixture", "uniform"], default="mixture")
    ap.add_argument(
        "--kinds",
        nargs="+",
        default=["flat", "hnsw", "ivf-pq"],
        help="with --grpc also 'default': no index kind given",
    )
    ap.add_argument("--grpc", action="store_true", help="through the search service")
    ap.add_argument(
        "--service-log",
        type=Path,
        default=Path(tempfile.gettempdir()) / "bench-search-service.log",
        help="with --grpc: where the service's log goes",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    x, queries = make_data(args.data, args.n, args.queries, args.dim, args.seed)
    faiss.omp_set_num_threads(os.cpu_count() or 1)  # the exact answers, on every core
    _, truth = faiss.knn(queries, x, args.k, metric=faiss.METRIC_INNER_PRODUCT)
    faiss.omp_set_num_threads(args.threads)
    if args.grpc:
        rows = [run_grpc(kind, x, queries, truth, args.k, args.service_log) for kind in args.kinds]
        print(
            f"\n{args.n:,} x {args.dim}-d vectors ({args.data}), {args.queries} queries,"
            f" k={args.k}, through the search service (its default settings), one client\n"
        )
        print_table(GRPC_HEADER.split("|"), [grpc_cells(r, args.n) for r in rows])
        return
    rows = [run(kind, x, queries, truth, args.k) for kind in args.kinds]
    print(
        f"\n{args.n:,} x {args.dim}-d vectors ({args.data}), {args.queries} queries, k={args.k},"
        f" {args.threads} FAISS thread(s)\n"
    )
    header = (
        "index|params|recall@10|p50 ms|p95 ms|filtered (2 %) p50 ms|build s|snapshot s|disk MiB"
    )
    cells = [
        [
            r["kind"],
            params_text(r["params"]),
            f"{r['recall']:.3f}",
            f"{r['p50']:.2f}",
            f"{r['p95']:.2f}",
            f"{r['filtered_p50']:.2f}",
            f"{r['build_s']:.1f}",
            f"{r['snapshot_s']:.2f}",
            f"{r['disk_mb']:.0f}",
        ]
        for r in rows
    ]
    print_table(header.split("|"), cells)


if __name__ == "__main__":
    main()
