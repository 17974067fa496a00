"""Search service queries per second against raw FAISS on the same graph, measured in one run.

    flock /tmp/bench.lock .venv/bin/python bench/bench_search_qps.py          # 100k x 384, hnsw
    .venv/bin/python bench/bench_search_qps.py --n 20000 --queries 1000       # a quick run

The search service runs in a child process (``SearchApp``, the code behind ``synesthesia serve
search``; TLS and tokens off, a temporary data directory, no encoders). This process fills a
collection of ``--n`` vectors (bench/bench_index.py's seeded Gaussian mixture) of index kind
``--kind`` with the service's default parameters through the SDK, snapshots it, then measures:

* **raw FAISS, single**: the snapshot file loaded with ``read_snapshot`` (the same graph, at
  the efSearch the service searches with: its calibrated effort, from DescribeCollection; the
  service also scores its calibration holdout, up to 200 items, exactly per query), one FAISS
  thread, one query per ``search`` call;
* **service, N clients**: ``--clients`` concurrent ``AsyncSearchClient``s, each its own channel,
  sending vector ``Query`` calls (k=10) until every query has been asked ``--repeat`` times
  (p50: of the calls' latency);
* **raw FAISS, batched**: two FAISS threads, ``--batch`` queries per ``search`` call;
* **service, QueryBatch**: ``--batch-clients`` concurrent clients sending ``query_batch`` calls
  of ``--batch`` vector queries;
* **no-op gRPC server** (the bound of any Python gRPC search service on this machine): the same
  ``--clients`` SDK clients and vector ``Query`` calls against a plain ``grpc.aio`` server in a
  second child process that answers every call with a fixed 10-hit reply: no interceptors, no
  search. Its QPS ÷ raw single says how near half the raw rate any Python server can come here.

The five run ``--rounds`` times, interleaved, and each path's best round is kept: the machine
may be shared, and a disturbance then costs one round of each path, not a whole path. QPS
counts queries (not calls) from the first call to the last reply; recall@10 is against an exact
search; "server CPU" is the child's user + system CPU time (every thread, from /proc) divided by
the queries of that round, and "of which the event-loop thread" its main thread's share (gRPC's
Python side and the query flow; the rest is the search lanes, FAISS included, and gRPC's own
threads). Prints a markdown table, the two ratios of the issue's done-when
(service / raw single and QueryBatch / raw batched) and no-op server / raw single."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synesthesia.models.device import available_cpus  # noqa: E402

from bench.bench_index import make_data  # noqa: E402
from bench.bench_serving import child_service  # noqa: E402

COLLECTION = "qps"
_TICK = os.sysconf("SC_CLK_TCK")


def serve_child(data_dir: str) -> None:
    """Child process: the search service on a free port; prints the port, serves until stdin
    closes."""
    from synesthesia.services.search.app import SearchApp
    from synesthesia.services.search.settings import SearchSettings

    settings = SearchSettings(
        port=0,
        data_dir=Path(data_dir),
        text_encoder="",
        image_encoder="",
        audio_encoder="",
        sqlite_synchronous="NORMAL",  # the build only; queries read nothing from SQLite
        snapshot_interval_s=3600,
    )

    async def main() -> None:
        app = SearchApp(settings)
        server = await app.start()
        print(json.dumps({"port": server.port}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await app.stop(0)

    asyncio.run(main())


def noop_child() -> None:
    """Child process: a bare grpc.aio SearchService whose Query returns 10 fixed hits; prints
    the port, serves until stdin closes."""
    from grpc import aio
    from synesthesia.v1 import common_pb2, search_pb2, search_pb2_grpc

    reply = search_pb2.QueryResponse()
    for i in range(10):
        reply.hits.add(id=str(i), score=1.0 - i / 100, modality=common_pb2.MODALITY_IMAGE)

    class Fixed(search_pb2_grpc.SearchServiceServicer):
        async def Query(self, request, context):  # type: ignore[no-untyped-def]
            return reply

    async def main() -> None:
        server = aio.server()
        search_pb2_grpc.add_SearchServiceServicer_to_server(Fixed(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(json.dumps({"port": port}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop(0)

    asyncio.run(main())


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU time of a process: (every thread, its main thread: the event loop)."""

    def of(stat: Path) -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK

    return of(Path(f"/proc/{pid}/stat")), of(Path(f"/proc/{pid}/task/{pid}/stat"))


def cpu_ms(before: tuple[float, float], pid: int, queries: int) -> dict[str, float]:
    after = cpu_seconds(pid)
    return {
        "cpu_ms": (after[0] - before[0]) / queries * 1e3,
        "loop_ms": (after[1] - before[1]) / queries * 1e3,
    }


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)]))


def build(target: str, x: np.ndarray, kind: str, params: dict[str, int]) -> tuple[float, int]:
    """Creates and fills the collection through the SDK, waits until its search effort is
    calibrated to the final size, snapshots it; (seconds, the effort the service uses)."""
    from synesthesia.client import Item, SearchClient

    with SearchClient(target, timeout=600) as client:
        client.create_collection(COLLECTION, dim=x.shape[1], index=kind, index_params=params)
        start = time.perf_counter()
        step = 1000
        for s in range(0, len(x), step):
            part = range(s, min(len(x), s + step))
            client.upsert(COLLECTION, [Item(str(i), x[i], modality="image") for i in part], step)
        info = client.describe_collection(COLLECTION)
        while info.search_effort and info.calibrated_count < 0.98 * len(x):
            time.sleep(1.0)
            info = client.describe_collection(COLLECTION)
        client.snapshot(COLLECTION)
        return time.perf_counter() - start, int(info.search_effort)


def raw_index(data_dir: Path) -> tuple[object, dict[int, int], dict[str, int]]:
    """(the FAISS index of the snapshot, label -> row number, the service's index params)."""
    from synesthesia.index.faiss_index import read_snapshot
    from synesthesia.index.store import Store

    store = Store(data_dir / "index.sqlite3")
    try:
        spec = next(s for s in store.specs() if s.name == COLLECTION)
        rows = {seq: int(item_id) for item_id, seq, _, _ in store.live_rows(COLLECTION)}
    finally:
        store.close()
    vi, _, _ = read_snapshot(data_dir / "snapshots" / f"{COLLECTION}.snap", spec)
    return vi, rows, dict(spec.params)


def search_params(vi: object, effort: int) -> object:
    """FAISS search parameters at the service's effort (its calibrated efSearch / nprobe)."""
    inner = vi.inner  # type: ignore[attr-defined]
    if isinstance(inner, faiss.IndexHNSW):
        p = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
        p.efSearch = effort
        return p
    if isinstance(inner, faiss.IndexIVF):
        p = faiss.SearchParametersIVF()
        p.nprobe = effort
        return p
    return None


def raw_single(vi: object, params: object, queries: np.ndarray, args: argparse.Namespace) -> dict:
    """One query per call, one FAISS thread."""
    faiss.omp_set_num_threads(1)
    index = vi.index  # type: ignore[attr-defined]
    labels = []
    start = time.perf_counter()
    for _ in range(args.repeat):
        labels = [index.search(q[None, :], args.k, params=params)[1][0] for q in queries]
    qps = args.repeat * len(queries) / (time.perf_counter() - start)
    return {"qps": qps, "labels": labels, "p50": 1e3 / qps}


def raw_batched(vi: object, params: object, queries: np.ndarray, args: argparse.Namespace) -> dict:
    """``--batch`` queries per call, two FAISS threads."""
    faiss.omp_set_num_threads(2)
    index = vi.index  # type: ignore[attr-defined]
    parts: list[np.ndarray] = []
    start = time.perf_counter()
    for _ in range(args.repeat):
        parts = [
            index.search(queries[s : s + args.batch], args.k, params=params)[1]
            for s in range(0, len(queries), args.batch)
        ]
    qps = args.repeat * len(queries) / (time.perf_counter() - start)
    return {"qps": qps, "labels": list(np.concatenate(parts)), "p50": 1e3 * args.batch / qps}


async def drive(
    target: str,
    clients: int,
    calls: list[int],
    one: Callable[..., Awaitable[list[list[int]]]],
) -> tuple[float, list[float], dict[int, list[list[int]]]]:
    """Runs the calls (each a start offset) over ``clients`` concurrent clients; returns
    (seconds, per-call latencies, start -> the ids found for each query of the call)."""
    from synesthesia.client import AsyncSearchClient

    conns = [AsyncSearchClient(target, timeout=120) for _ in range(clients)]
    try:
        await asyncio.gather(*(one(c, calls[0]) for c in conns))  # connect, warm
        pending = iter(calls)
        latencies: list[float] = []
        found: dict[int, list[list[int]]] = {}

        async def worker(c: AsyncSearchClient) -> None:
            for s in pending:
                t = time.perf_counter()
                found[s] = await one(c, s)
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in conns))
        return time.perf_counter() - start, latencies, found
    finally:
        for c in conns:
            await c.close()


def served_single(target: str, pid: int, queries: np.ndarray, args: argparse.Namespace) -> dict:
    async def one(c, s: int) -> list[list[int]]:  # type: ignore[no-untyped-def]
        hits = await c.query(COLLECTION, vector=queries[s], k=args.k)
        return [[int(h.id) for h in hits]]

    calls = list(range(len(queries))) * args.repeat
    cpu, client = cpu_seconds(pid), time.process_time()
    seconds, lat, found = asyncio.run(drive(target, args.clients, calls, one))
    return {
        "qps": len(calls) / seconds,
        "ids": [found[s][0] for s in range(len(queries))],
        "p50": float(np.percentile(lat, 50)) * 1e3,
        "client_ms": (time.process_time() - client) / len(calls) * 1e3,
        **cpu_ms(cpu, pid, len(calls)),
    }


def served_batched(target: str, pid: int, queries: np.ndarray, args: argparse.Namespace) -> dict:
    async def one(c, s: int) -> list[list[int]]:  # type: ignore[no-untyped-def]
        results = await c.query_batch(
            COLLECTION, [{"vector": q} for q in queries[s : s + args.batch]], k=args.k
        )
        return [[int(h.id) for h in hits] for hits in results]

    calls = list(range(0, len(queries), args.batch)) * args.repeat
    n = args.repeat * len(queries)
    cpu, client = cpu_seconds(pid), time.process_time()
    seconds, lat, found = asyncio.run(drive(target, args.batch_clients, calls, one))
    return {
        "qps": n / seconds,
        "ids": [ids for s in range(0, len(queries), args.batch) for ids in found[s]],
        "p50": float(np.percentile(lat, 50)) * 1e3,
        "client_ms": (time.process_time() - client) / n * 1e3,
        **cpu_ms(cpu, pid, n),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=1, help="passes over the queries a round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the four paths (best kept)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--kind", default="hnsw", choices=["flat", "hnsw", "ivf-pq"])
    ap.add_argument(
        "--ef-search", type=int, default=0, help="hnsw ef_search (0: the default, calibrated)"
    )
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64, help="queries per batched call")
    ap.add_argument("--batch-clients", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--noop-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        serve_child(args.child)
        return 0
    if args.noop_child:
        noop_child()
        return 0

    x, queries = make_data("mixture", args.n, args.queries, args.dim, args.seed)
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(x)
    truth = exact.search(queries, args.k)[1]
    del exact

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "index"
        cmd = [sys.executable, __file__, "--child", str(data_dir)]
        noop_cmd = [sys.executable, __file__, "--noop-child"]
        with child_service(cmd) as (proc, port), child_service(noop_cmd) as (noop, noop_port):
            target = f"127.0.0.1:{port}"
            params = {"ef_search": args.ef_search} if args.ef_search else {}
            build_s, effort = build(target, x, args.kind, params)
            vi, rows, params = raw_index(data_dir)
            sp = search_params(vi, effort)
            phases: dict[str, Callable[[], dict]] = {
                "raw FAISS, single queries, 1 thread": lambda: raw_single(vi, sp, queries, args),
                f"service, {args.clients} clients, Query": lambda: served_single(
                    target, proc.pid, queries, args
                ),
                f"raw FAISS, batches of {args.batch}, 2 threads": lambda: raw_batched(
                    vi, sp, queries, args
                ),
                f"service, {args.batch_clients} clients, QueryBatch of {args.batch}": lambda: (
                    served_batched(target, proc.pid, queries, args)
                ),
                f"no-op gRPC server, {args.clients} clients, Query": lambda: served_single(
                    f"127.0.0.1:{noop_port}", noop.pid, queries, args
                ),
            }
            best: dict[str, dict] = {}
            for _ in range(args.rounds):  # interleaved: a disturbance hits one round of each
                for name, phase in phases.items():
                    got = phase()
                    if name not in best or got["qps"] > best[name]["qps"]:
                        best[name] = got
            for child in (proc, noop):
                assert child.stdin is not None
                child.stdin.close()
                child.wait(120)
    for got in best.values():
        if "labels" in got:
            got["ids"] = [[rows[int(lb)] for lb in row if lb >= 0] for row in got["labels"]]

    shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "-"
    shown += f"; effort in use {effort}" if effort else ""
    print(
        f"\n{args.n:,} x {args.dim}-d vectors (mixture), index {args.kind} ({shown}), built in"
        f" {build_s:.0f} s through the service; {args.queries} queries x {args.repeat} a round,"
        f" k={args.k}, the best of {args.rounds} rounds\n"
    )
    print(
        "| path | QPS | recall@10 | p50 ms per call | server CPU ms per query"
        " | of which the event-loop thread | client CPU ms per query |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, got in best.items():
        cpu, loop, client = (
            f"{got[key]:.2f}" if key in got else "-" for key in ("cpu_ms", "loop_ms", "client_ms")
        )
        found = "-" if name.startswith("no-op") else f"{recall(got['ids'], truth):.3f}"
        print(
            f"| {name} | {got['qps']:,.0f} | {found} | {got['p50']:.2f} | {cpu} | {loop}"
            f" | {client} |"
        )
    raw, service, raw_many, service_many, noop = best.values()
    print(f"\nservice / raw single: {service['qps'] / raw['qps']:.2f}")
    print(f"QueryBatch / raw batched: {service_many['qps'] / raw_many['qps']:.2f}")
    print(f"no-op gRPC server / raw single: {noop['qps'] / raw['qps']:.2f}")
    # a search service on these cores pays at least the no-op server's CPU and its clients'
    # per query, plus FAISS's own (raw single runs one core flat out: 1 / its QPS a query)
    floor_ms = noop["cpu_ms"] + noop["client_ms"] + 1e3 / raw["qps"]
    bound = available_cpus() * 1e3 / floor_ms
    print(
        f"service / raw single at most ({available_cpus()} cores; per query the no-op server's"
        f" and its clients' CPU plus raw FAISS's, {floor_ms:.2f} ms): {bound / raw['qps']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
