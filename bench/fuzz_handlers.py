"""Fuzzing of the search service's gRPC handlers through a real server (interceptors, error
mapping, the search flow, the index on disk): random structured requests and byte-mutated valid
ones for every RPC. Counts status codes; a crash of the server, an INTERNAL/UNKNOWN status or a
call slower than the hang limit is a failure. Encoders are a fake that returns unit vectors (the
media decoders are fuzzed on their own by bench/fuzz.py).

    .venv/bin/python bench/fuzz_handlers.py --n 10000          # per handler
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from google.protobuf import struct_pb2  # noqa: E402
from synesthesia.errors import InvalidInput  # noqa: E402
from synesthesia.index import IndexManager  # noqa: E402
from synesthesia.modality import Modality  # noqa: E402
from synesthesia.services.search.flow import EncodedBatch, EncoderInfo, SearchFlow  # noqa: E402
from synesthesia.services.search.servicer import SearchServicer  # noqa: E402
from synesthesia.services.search.store import LocalStore  # noqa: E402
from synesthesia.serving.server import ServiceSpec, build_server  # noqa: E402
from synesthesia.v1 import search_pb2, search_pb2_grpc  # noqa: E402

DIM = 8
BAD_CODES = {"INTERNAL", "UNKNOWN"}


class FakeEncoders:
    async def embed(
        self,
        modality: Modality,
        contents: Sequence[str | bytes],
        ids: Sequence[str],
        deadline: float | None,
    ) -> EncodedBatch:
        for i, c in enumerate(contents):
            if isinstance(c, bytes) and c[:1] == b"\x00":
                raise InvalidInput(f"item {i}: not decodable {modality.value}")
        rng = np.random.default_rng(len(contents))
        v = rng.normal(size=(len(contents), DIM)).astype(np.float32)
        return EncodedBatch(v / np.linalg.norm(v, axis=1, keepdims=True), "fake")

    async def info(self) -> EncoderInfo:
        return EncoderInfo("fake", DIM)


# -- random values ------------------------------------------------------------------------------
def _char(r: random.Random) -> str:
    code = r.randint(0, 0x2FFFF)
    return chr(code if not 0xD800 <= code <= 0xDFFF else 0xFFFD)  # protobuf strings are UTF-8


def r_str(r: random.Random) -> str:
    return r.choice(
        [
            "c",
            "",
            "nope",
            "c\n",
            " c",
            "a" * r.randint(0, 2000),
            "".join(_char(r) for _ in range(r.randint(0, 20))),
            f"id-{r.randint(0, 50)}",
            "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
        ]
    )


def r_num(r: random.Random) -> float:
    return r.choice(
        [0.0, 1.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e39, -1e300, r.gauss(0, 1e6)]
    )


def r_json(r: random.Random, depth: int = 0) -> Any:
    kind = r.randint(0, 6 if depth < 3 else 3)
    if kind == 0:
        return r_num(r)
    if kind == 1:
        return r_str(r)
    if kind == 2:
        return r.choice([True, False, None])
    if kind == 3:
        return r.randint(-(2**70), 2**70)
    if kind == 4:
        return [r_json(r, depth + 1) for _ in range(r.randint(0, 4))]
    keys = ["metadata", "ids", "modality", "eq", "ne", "in", "nin", "gt", "gte", "lt", "lte"]
    return {r.choice([*keys, r_str(r)]): r_json(r, depth + 1) for _ in range(r.randint(0, 4))}


def r_struct(r: random.Random) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    value = r_json(r)
    if isinstance(value, dict):
        with contextlib.suppress(ValueError, TypeError):
            s.update({str(k): v for k, v in value.items()})
    return s


def r_vector(r: random.Random) -> search_pb2.Vector:
    n = r.choice([DIM, DIM, 0, 1, DIM + 1, r.randint(0, 3000)])
    return search_pb2.Vector(
        values=[r_num(r) if r.random() < 0.1 else r.gauss(0, 1) for _ in range(n)],
        model_id=r.choice(["", "fake", "other"]),
    )


def r_item(r: random.Random) -> search_pb2.UpsertItem:
    item = search_pb2.UpsertItem(id=r_str(r), modality=r.randint(-1, 5), metadata=r_struct(r))
    kind = r.randint(0, 3)
    if kind == 0:
        item.vector.CopyFrom(r_vector(r))
    elif kind == 1:
        item.text = r_str(r)
    elif kind == 2:
        item.data = r.randbytes(r.randint(0, 64))
    return item


def plausible_item(r: random.Random) -> search_pb2.UpsertItem:
    """A mostly valid item, so that deeper paths (embedding, writing, the index) are reached."""
    item = search_pb2.UpsertItem(id=f"id-{r.randint(0, 10**6)}")
    kind = r.randint(0, 2)
    if kind == 0:
        item.vector.CopyFrom(search_pb2.Vector(values=[r.gauss(0, 1) for _ in range(DIM)]))
        item.modality = r.randint(1, 3)
    elif kind == 1:
        item.text = f"words {r.randint(0, 99)}"
    else:
        item.data = r.randbytes(16)
        item.modality = r.randint(2, 3)
    item.metadata.update({"n": r.randint(0, 9), "kind": r.choice(["a", "b"])})
    return item


def plausible_query(r: random.Random) -> search_pb2.QueryRequest:
    q = search_pb2.QueryRequest(collection="c", k=r.randint(1, 20))
    kind = r.randint(0, 2)
    if kind == 0:
        q.text = "words"
    elif kind == 1:
        q.vector.CopyFrom(search_pb2.Vector(values=[r.gauss(0, 1) for _ in range(DIM)]))
    else:
        q.id = f"id-{r.randint(0, 500)}"
    if r.random() < 0.5:
        q.filter.update({"metadata": {"n": {r.choice(["gt", "lte", "in"]): r.choice([3, [1, 2]])}}})
    return q


def r_query(r: random.Random) -> search_pb2.QueryRequest:
    if r.random() < 0.5:
        return plausible_query(r)
    q = search_pb2.QueryRequest(
        collection=r_str(r), k=r.choice([0, 1, 5, -1, 1000, 1001, 2**31 - 1])
    )
    kind = r.randint(0, 5)
    if kind == 0:
        q.text = r_str(r)
    elif kind == 1:
        q.image = r.randbytes(r.randint(0, 32))
    elif kind == 2:
        q.audio = r.randbytes(r.randint(0, 32))
    elif kind == 3:
        q.vector.CopyFrom(r_vector(r))
    elif kind == 4:
        q.id = r_str(r)
    q.modalities.extend(r.randint(-1, 5) for _ in range(r.randint(0, 3)))
    q.filter.CopyFrom(r_struct(r))
    if r.random() < 0.3:
        q.recall_target = r.choice([r_num(r), r.random(), 0.95, 1.0])
    return q


GENERATORS: dict[str, Callable[[random.Random], Any]] = {
    "CreateCollection": lambda r: search_pb2.CreateCollectionRequest(
        config=search_pb2.CollectionConfig(
            name=r_str(r),
            dim=r.choice([0, 1, DIM, 5000, 2**32 - 1]),
            metric=r.randint(-1, 4),
            index_kind=r.randint(-1, 5),
            index_params={r_str(r): r.randint(-(2**40), 2**40) for _ in range(r.randint(0, 3))},
            model_id=r.choice(["", "fake", r_str(r)]),
        )
    ),
    "DescribeCollection": lambda r: search_pb2.DescribeCollectionRequest(collection=r_str(r)),
    "DropCollection": lambda r: search_pb2.DropCollectionRequest(collection=r_str(r)),
    "Upsert": lambda r: search_pb2.UpsertRequest(
        collection=r.choice(["c", "c", r_str(r)]),
        items=[
            (plausible_item if r.random() < 0.9 else r_item)(r)
            for _ in range(r.choice([0, 1, 2, 5, 40]))
        ]
        if r.random() < 0.5
        else [r_item(r) for _ in range(r.choice([0, 1, 2, 5]))],
    ),
    "Delete": lambda r: search_pb2.DeleteRequest(
        collection=r.choice(["c", r_str(r)]),
        ids=[r_str(r) for _ in range(r.randint(0, 4))],
        filter=r_struct(r) if r.random() < 0.5 else None,
    ),
    "Get": lambda r: search_pb2.GetRequest(
        collection=r.choice(["c", r_str(r)]), ids=[r_str(r) for _ in range(r.randint(0, 5))]
    ),
    "Query": r_query,
    "QueryBatch": lambda r: search_pb2.QueryBatchRequest(
        queries=[r_query(r) for _ in range(r.choice([0, 1, 3, 10, 65]))]
    ),
    "Snapshot": lambda r: search_pb2.SnapshotRequest(collection=r.choice(["", "c", r_str(r)])),
    "Classify": lambda r: search_pb2.ClassifyRequest(
        **r.choice([{"text": r_str(r)}, {"image": r.randbytes(8)}, {"audio": r.randbytes(8)}, {}]),
        labels=["dog", "cat", "car"]
        if r.random() < 0.5
        else [r_str(r) for _ in range(r.choice([0, 1, 3, 1001]))],
        template=r.choice(["", "a {}", "{} {}", "x", r_str(r)]),
        temperature=r_num(r),
    ),
}
RESPONSES = {name: getattr(search_pb2, f"{name}Response") for name in GENERATORS}


def mutate(data: bytes, r: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(r.randint(1, 6)):
        op = r.randint(0, 2)
        pos = r.randint(0, len(out)) if out else 0
        if op == 0 and out:
            out[min(pos, len(out) - 1)] = r.randint(0, 255)
        elif op == 1:
            out[pos:pos] = r.randbytes(r.randint(1, 8))
        elif out:
            del out[pos : pos + r.randint(1, 8)]
    return bytes(out)


async def fuzz(n: int, seed: int, hang_s: float) -> dict[str, Counter[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        manager = IndexManager(Path(tmp))
        store = LocalStore(manager)
        flow = SearchFlow(store, FakeEncoders(), max_items_per_request=64)
        server = await build_server(
            [
                ServiceSpec(
                    SearchServicer(flow),
                    search_pb2_grpc.add_SearchServiceServicer_to_server,
                    "synesthesia.v1.SearchService",
                )
            ]
        )
        await server.set_serving(True)
        r = random.Random(seed)
        results: dict[str, Counter[str]] = {}
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            for name, make in GENERATORS.items():
                counts: Counter[str] = Counter()
                raw = channel.unary_unary(
                    f"/synesthesia.v1.SearchService/{name}",
                    request_serializer=lambda b: b,
                    response_deserializer=RESPONSES[name].FromString,
                )
                for i in range(n):
                    if i % 200 == 0:  # the collection most requests aim at
                        with contextlib.suppress(grpc.aio.AioRpcError):
                            await stub.CreateCollection(
                                search_pb2.CreateCollectionRequest(
                                    config=search_pb2.CollectionConfig(name="c", dim=DIM)
                                )
                            )
                    request = make(r)
                    data = request.SerializeToString()
                    if i % 2:
                        data = mutate(data, r)
                    t0 = time.perf_counter()
                    try:
                        await raw(data, timeout=hang_s)
                        counts["OK"] += 1
                    except grpc.aio.AioRpcError as err:
                        code = err.code().name
                        if code == "DEADLINE_EXCEEDED":
                            code = "HANG"
                        counts[code] += 1
                        if code in BAD_CODES or code == "HANG":
                            print(f"{name}: {code} {err.details()!r} for {data[:80]!r}")
                    counts["max_ms"] = max(counts["max_ms"], int(1000 * (time.perf_counter() - t0)))
                results[name] = counts
        await server.stop(0)
        store.close()
        manager.close()
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=10_000, help="requests per handler")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hang", type=float, default=5.0, help="seconds before a call is a hang")
    args = p.parse_args()
    t0 = time.perf_counter()
    results = asyncio.run(fuzz(args.n, args.seed, args.hang))
    print(
        f"{args.n} requests per handler (half byte-mutated), seed {args.seed}, "
        f"{time.perf_counter() - t0:.0f} s"
    )
    print(
        "| handler | OK | INVALID_ARGUMENT | NOT_FOUND | other codes | INTERNAL/UNKNOWN "
        "| hangs | slowest ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    bad = 0
    for name, c in results.items():
        known = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "max_ms", "HANG", *BAD_CODES}
        other = {k: v for k, v in c.items() if k not in known}
        internal = sum(c[k] for k in BAD_CODES)
        bad += internal + c["HANG"]
        print(
            f"| {name} | {c['OK']} | {c['INVALID_ARGUMENT']} | {c['NOT_FOUND']} | "
            f"{other or '-'} | {internal} | {c['HANG']} | {c['max_ms']} |"
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
