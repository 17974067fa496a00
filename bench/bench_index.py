"""Recall@10 against exact search and query latency of the index kinds, through the collection API.

    python bench/bench_index.py                      # 100k x 384, clustered vectors
    python bench/bench_index.py --data uniform       # isotropic noise: the worst case for ANN
    python bench/bench_index.py --n 20000 --kinds hnsw ivf-pq

Prints a markdown table (one row per index kind) for docs/benchmarks.md. Build time includes the
SQLite commits (synchronous=NORMAL here) and, for ivf-pq, training. Latency is one query at a
time, one FAISS thread, including filter-free result assembly; "filtered" runs the same queries
with a metadata filter that keeps 2 % of the items."""

from __future__ import annotations

import argparse
import tempfile
import time

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
        lat, got = [], []
        for q in queries:
            t = time.perf_counter()
            got.append([int(h.id) for h in coll.query(q, k)])
            lat.append(time.perf_counter() - t)
        flat_lat = []
        for q in queries[:100]:
            t = time.perf_counter()
            coll.query(q, k, {"metadata": {"b": 7}})
            flat_lat.append(time.perf_counter() - t)
        snap_t = time.perf_counter()
        coll.snapshot()
        snap = time.perf_counter() - snap_t
        info = coll.describe()  # after the snapshot, so its file counts in bytes_on_disk
    recall = np.mean([len(set(g) & set(t)) / k for g, t in zip(got, truth, strict=True)])
    return {
        "kind": kind,
        "params": PARAMS[kind],
        "build_s": build,
        "recall": recall,
        "p50": np.percentile(lat, 50) * 1e3,
        "p95": np.percentile(lat, 95) * 1e3,
        "filtered_p50": np.percentile(flat_lat, 50) * 1e3,
        "snapshot_s": snap,
        "disk_mb": info.bytes_on_disk / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--data", choices=["mixture", "uniform"], default="mixture")
    ap.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivf-pq"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.threads)
    x, queries = make_data(args.data, args.n, args.queries, args.dim, args.seed)
    truth = np.argsort(-(queries @ x.T), axis=1)[:, : args.k]
    rows = [run(kind, x, queries, truth, args.k) for kind in args.kinds]
    print(
        f"\n{args.n:,} x {args.dim}-d vectors ({args.data}), {args.queries} queries, k={args.k},"
        f" {args.threads} FAISS thread(s)\n"
    )
    print(
        "| index | params | recall@10 | p50 ms | p95 ms | filtered (2 %) p50 ms | build s |"
        " snapshot s | disk MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
        print(
            f"| {r['kind']} | {params} | {r['recall']:.3f} | {r['p50']:.2f} | {r['p95']:.2f} |"
            f" {r['filtered_p50']:.2f} | {r['build_s']:.1f} | {r['snapshot_s']:.2f} |"
            f" {r['disk_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
