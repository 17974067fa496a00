"""The search service on Ray (3 hash-routed shards behind a router, media embedded by the
encoder deployments) against the standalone search service with the same client calls: same
top-k for cross-modal queries, same stored vectors, same error codes; and the sharding check:
30,000 vectors, router top-k == a single flat index for 100 queries."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import faiss
import grpc
import numpy as np
import pytest
from google.protobuf import struct_pb2
from synesthesia.serving.security import new_token
from synesthesia.v1 import common_pb2, search_pb2, search_pb2_grpc

from tests.servers import unused_port
from tests.services.conftest import start_encoders
from tests.services.test_search_service import start_search

pytestmark = [pytest.mark.ray, pytest.mark.integration]

ray = pytest.importorskip("ray")

IMAGE, AUDIO, TEXT = common_pb2.MODALITY_IMAGE, common_pb2.MODALITY_AUDIO, common_pb2.MODALITY_TEXT
SHARDS = 3
# The Ray search application checks bearer tokens (AppArgs.tokens_file): every call here carries
# a write token, as a real client of a protected deployment would.
WRITE_TOKEN, WRITE_LINE = new_token("write", "test-admin")
READ_TOKEN, READ_LINE = new_token("read", "test-reader")
SEARCH = (("application", "search"), ("authorization", f"Bearer {WRITE_TOKEN}"))


def struct(d: dict[str, object]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


@pytest.fixture(scope="module")
def ray_search(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[search_pb2_grpc.SearchServiceStub]:
    """Local Ray (2 CPUs, 200 MB object store): text/image/audio encoders + 3-shard search."""
    from synesthesia.services.ray.args import AppArgs, Scaling, SearchOptions
    from synesthesia.services.ray.runtime import deploy, init_ray, shutdown, start_serve

    t0 = time.perf_counter()
    init_ray(num_cpus=2, object_store_bytes=200 * 1024 * 1024)
    port = unused_port()
    small = Scaling(num_cpus=0.25, min_replicas=1, max_replicas=1)
    options = SearchOptions(
        shards=SHARDS, data_dir=tmp_path_factory.mktemp("ray-index"), shard_num_cpus=0.2
    )
    tokens = tmp_path_factory.mktemp("ray-tokens") / "tokens.txt"
    tokens.write_text(f"{WRITE_LINE}\n{READ_LINE}\n")
    try:
        start_serve(grpc_port=port, http_port=unused_port())
        took = deploy(
            [AppArgs(service=s, scaling=small) for s in ("text", "image", "audio")]
            + [AppArgs(service="search", search=options, scaling=small, tokens_file=tokens)]
        )
        print(
            f"\nRay up, encoders + {SHARDS}-shard search RUNNING in "
            f"{time.perf_counter() - t0:.1f} s: {took}"
        )
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield search_pb2_grpc.SearchServiceStub(channel)
    finally:
        shutdown()


@pytest.fixture(scope="module")
def standalone_search(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[search_pb2_grpc.SearchServiceStub]:
    with ExitStack() as stack:
        targets = start_encoders(stack)
        yield start_search(stack, tmp_path_factory.mktemp("standalone-index"), targets)


@pytest.fixture(scope="module")
def media_items(data_dir: Path) -> list[search_pb2.UpsertItem]:
    root = data_dir / "tuxpaint_stamps"
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    picked = [r for r in rows if r["category"].startswith("animals")][:8]
    items = []
    for r in picked:
        meta = {"label": r["label"], "category": r["category"]}
        items += [
            search_pb2.UpsertItem(
                id=f"{r['label']}.png",
                data=(root / r["image"]).read_bytes(),
                modality=IMAGE,
                metadata=struct({**meta, "kind": "picture"}),
            ),
            search_pb2.UpsertItem(
                id=f"{r['label']}.ogg",
                data=(root / r["audio"]).read_bytes(),
                modality=AUDIO,
                metadata=struct({**meta, "kind": "sound"}),
            ),
            search_pb2.UpsertItem(
                id=f"{r['label']}.txt",
                text=r["caption"],
                metadata=struct({**meta, "kind": "caption"}),
            ),
        ]
    return items


@pytest.fixture(scope="module")
def both(
    ray_search: search_pb2_grpc.SearchServiceStub,
    standalone_search: search_pb2_grpc.SearchServiceStub,
    media_items: list[search_pb2.UpsertItem],
) -> dict[str, tuple[search_pb2_grpc.SearchServiceStub, tuple[tuple[str, str], ...]]]:
    """The same collection, filled by the same calls, on Ray and standalone."""
    out = {"ray": (ray_search, SEARCH), "standalone": (standalone_search, ())}
    for stub, md in out.values():
        create = search_pb2.CreateCollectionRequest(config=search_pb2.CollectionConfig(name="tux"))
        stub.CreateCollection(create, metadata=md, timeout=60)
        first, rest = media_items[:12], media_items[12:]
        reply = stub.Upsert(
            search_pb2.UpsertRequest(collection="tux", items=first), metadata=md, timeout=300
        )
        assert list(reply.ids) == [it.id for it in first]
        acks = list(
            stub.UpsertStream(
                iter([search_pb2.UpsertStreamRequest(collection="tux", items=rest)]),
                metadata=md,
                timeout=300,
            )
        )
        assert [list(a.ids) for a in acks] == [[it.id for it in rest]]
    return out


def _hits(reply: search_pb2.QueryResponse) -> list[tuple[str, float]]:
    return [(h.id, h.score) for h in reply.hits]


@pytest.mark.parametrize("kind", ["text", "image", "audio", "id"])
def test_cross_modal_query_same_top_k(both, media_items, kind: str) -> None:  # type: ignore[no-untyped-def]
    source = media_items[4]  # one picture, sound or caption of the same stamp
    by = {
        "text": {"text": "an animal making a loud noise"},
        "image": {"image": media_items[3].data},
        "audio": {"audio": media_items[4].data},
        "id": {"id": source.id},
    }[kind]
    replies = {
        name: stub.Query(
            search_pb2.QueryRequest(collection="tux", k=6, **by), metadata=md, timeout=120
        )
        for name, (stub, md) in both.items()
    }
    ray_hits, alone_hits = _hits(replies["ray"]), _hits(replies["standalone"])
    assert len(ray_hits) == 6
    assert [i for i, _ in ray_hits] == [i for i, _ in alone_hits]
    assert np.allclose([s for _, s in ray_hits], [s for _, s in alone_hits], atol=1e-5)
    assert {h.modality for h in replies["ray"].hits} <= {IMAGE, AUDIO, TEXT}


def test_query_batch_answers_as_query_on_both(both, media_items) -> None:  # type: ignore[no-untyped-def]
    stub, md = both["standalone"]
    ids = [media_items[0].id, media_items[7].id]
    stored = stub.Get(search_pb2.GetRequest(collection="tux", ids=ids), timeout=60).items
    queries = [
        search_pb2.QueryRequest(collection="tux", k=5, text="an animal making a loud noise"),
        search_pb2.QueryRequest(collection="tux", k=5, image=media_items[3].data),
        search_pb2.QueryRequest(collection="tux", k=4, id=media_items[4].id),
        *(
            search_pb2.QueryRequest(
                collection="tux", k=6, vector=search_pb2.Vector(values=s.vector)
            )
            for s in stored  # two vectors, one k, no filter: one search of every shard
        ),
        search_pb2.QueryRequest(collection="tux", k=5, text="a small bird", modalities=[IMAGE]),
    ]
    answers = {}
    for name, (stub, md) in both.items():
        batch = stub.QueryBatch(
            search_pb2.QueryBatchRequest(queries=queries), metadata=md, timeout=120
        )
        singles = [stub.Query(q, metadata=md, timeout=120) for q in queries]
        assert [[i for i, _ in _hits(r)] for r in batch.results] == [
            [i for i, _ in _hits(r)] for r in singles
        ]
        answers[name] = [_hits(r) for r in batch.results]
    for ray_hits, alone_hits in zip(answers["ray"], answers["standalone"], strict=True):
        assert [i for i, _ in ray_hits] == [i for i, _ in alone_hits]
        assert np.allclose([s for _, s in ray_hits], [s for _, s in alone_hits], atol=1e-5)


def test_describe_get_and_filters_match(both) -> None:  # type: ignore[no-untyped-def]
    out = {}
    for name, (stub, md) in both.items():
        info = stub.DescribeCollection(
            search_pb2.DescribeCollectionRequest(collection="tux"), metadata=md, timeout=30
        )
        got = stub.Get(
            search_pb2.GetRequest(collection="tux", ids=["nope", "bat.png", "cat.txt"]),
            metadata=md,
            timeout=30,
        )
        sounds = stub.Query(
            search_pb2.QueryRequest(
                collection="tux",
                k=24,
                text="a bird",
                filter=struct({"metadata": {"kind": "sound"}}),
            ),
            metadata=md,
            timeout=60,
        )
        out[name] = (info.count, info.config.model_id, got, _hits(sounds))
    (rc, rm, rg, rs), (sc, sm, sg, ss) = out["ray"], out["standalone"]
    assert rc == sc == 24 and rm == sm
    assert [it.id for it in rg.items] == [it.id for it in sg.items]
    for a, b in zip(rg.items, sg.items, strict=True):
        assert np.abs(np.asarray(a.vector) - np.asarray(b.vector)).max() <= 1e-5
    assert [i for i, _ in rs] == [i for i, _ in ss] and len(rs) == 8


def test_errors_have_the_same_codes(both, media_items) -> None:  # type: ignore[no-untyped-def]
    bad = [
        search_pb2.UpsertItem(id="fine.txt", text="fine"),
        search_pb2.UpsertItem(id="junk.png", data=b"not an image", modality=IMAGE),
    ]
    cases = {
        "bad media": lambda stub, md: stub.Upsert(
            search_pb2.UpsertRequest(collection="tux", items=bad), metadata=md, timeout=60
        ),
        "unknown collection": lambda stub, md: stub.Query(
            search_pb2.QueryRequest(collection="nope", k=3, text="x"), metadata=md, timeout=60
        ),
        "no query": lambda stub, md: stub.Query(
            search_pb2.QueryRequest(collection="tux", k=3), metadata=md, timeout=60
        ),
    }
    details = {}
    for case, call in cases.items():
        codes = {}
        for name, (stub, md) in both.items():
            with pytest.raises(grpc.RpcError) as err:
                call(stub, md)
            codes[name] = err.value.code()
            details[(case, name)] = err.value.details() or ""
        assert codes["ray"] == codes["standalone"], case
        assert "Traceback" not in details[(case, "ray")], case
    for name in both:  # the encoder's message names the item, through the router too
        assert "junk.png" in details[("bad media", name)], details[("bad media", name)]
    for name, (stub, md) in both.items():  # the failed upsert wrote nothing anywhere
        got = stub.Get(
            search_pb2.GetRequest(collection="tux", ids=["fine.txt"]), metadata=md, timeout=30
        )
        assert not got.items, name


def test_sharding_router_top_k_equals_one_flat_index(
    ray_search: search_pb2_grpc.SearchServiceStub,
) -> None:
    n, dim, k, queries = 30_000, 64, 10, 100
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"v{i:05d}" for i in range(n)]
    config = search_pb2.CollectionConfig(
        name="flat", dim=dim, metric=search_pb2.METRIC_IP, index_kind=search_pb2.INDEX_KIND_FLAT
    )
    ray_search.CreateCollection(
        search_pb2.CreateCollectionRequest(config=config), metadata=SEARCH, timeout=60
    )
    t0 = time.perf_counter()
    requests = (
        search_pb2.UpsertStreamRequest(
            collection="flat",
            items=[
                search_pb2.UpsertItem(
                    id=ids[i], vector=search_pb2.Vector(values=vectors[i]), modality=TEXT
                )
                for i in range(start, min(n, start + 1000))
            ],
        )
        for start in range(0, n, 1000)
    )
    acks = list(ray_search.UpsertStream(requests, metadata=SEARCH, timeout=600))
    upsert_s = time.perf_counter() - t0
    assert sum(len(a.ids) for a in acks) == n
    info = ray_search.DescribeCollection(
        search_pb2.DescribeCollectionRequest(collection="flat"), metadata=SEARCH, timeout=60
    )
    assert info.count == n

    reference = faiss.IndexFlatIP(dim)
    reference.add(vectors)
    q = rng.standard_normal((queries, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    want_scores, want_labels = reference.search(q, k)
    t0 = time.perf_counter()
    equal = 0
    for row in range(queries):
        reply = ray_search.Query(
            search_pb2.QueryRequest(
                collection="flat", k=k, vector=search_pb2.Vector(values=q[row])
            ),
            metadata=SEARCH,
            timeout=60,
        )
        got_ids = [h.id for h in reply.hits]
        assert got_ids == [ids[j] for j in want_labels[row]], row
        assert np.allclose([h.score for h in reply.hits], want_scores[row], atol=1e-5)
        equal += 1
    query_s = time.perf_counter() - t0
    print(
        f"\nsharding: {n} vectors upserted through the router in {upsert_s:.1f} s; "
        f"{equal}/{queries} queries (k={k}) equal to one flat index; "
        f"{1000 * query_s / queries:.1f} ms per query over {SHARDS} shards"
    )


def _kill_shard(index: int) -> str:
    """Kills the replica actor of SearchShard<index> (as a crashed pod would); returns its name."""
    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if f"#SearchShard{index}#" in a["name"]
    ]
    assert names, "no replica actor of the shard found"
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    return names[0]


def test_a_killed_shard_loses_nothing_acknowledged(ray_search) -> None:  # type: ignore[no-untyped-def]
    """Shard 1 is killed in the middle of upserts and of queries: calls that need it fail with
    UNAVAILABLE or wait for its restart up to their deadline (never a partial answer); once
    Serve has restarted it, every acknowledged item is there and queries answer again."""
    import threading

    stub = ray_search
    dim = 8
    stub.CreateCollection(
        search_pb2.CreateCollectionRequest(
            config=search_pb2.CollectionConfig(name="fault", dim=dim, model_id="m")
        ),
        metadata=SEARCH,
        timeout=60,
    )
    rng = np.random.default_rng(7)
    acked: list[str] = []
    codes: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set() and n < 20_000:
            ids = [f"v{n + i}" for i in range(20)]
            n += 20
            items = [
                search_pb2.UpsertItem(
                    id=i,
                    vector=search_pb2.Vector(values=rng.normal(size=dim).tolist()),
                    modality=IMAGE,
                )
                for i in ids
            ]
            try:
                stub.Upsert(
                    search_pb2.UpsertRequest(collection="fault", items=items),
                    metadata=SEARCH,
                    timeout=20,
                )
                acked.extend(ids)
            except grpc.RpcError as err:
                codes.append(err.code().name)  # type: ignore[attr-defined]

    thread = threading.Thread(target=writer)
    thread.start()
    while len(acked) < 200:
        time.sleep(0.05)
    killed = _kill_shard(1)
    query = search_pb2.QueryRequest(
        collection="fault", vector=search_pb2.Vector(values=[1.0] * dim), k=5
    )
    outage: Counter[str] = Counter()
    answered_after_restart = 0
    deadline = time.monotonic() + 120
    while answered_after_restart < 3 and time.monotonic() < deadline:
        replaced = any(
            "#SearchShard1#" in a["name"] and a["name"] != killed
            for a in ray.util.list_named_actors(all_namespaces=True)
        )
        try:
            hits = stub.Query(query, metadata=SEARCH, timeout=10).hits
            outage["OK"] += 1
            answered_after_restart += replaced
        except grpc.RpcError as err:
            outage[err.code().name] += 1  # type: ignore[attr-defined]
        time.sleep(0.1)
    stop.set()
    thread.join(120)
    print(
        f"\nkilled {killed}; upsert errors {dict(Counter(codes))}; queries while it restarted: "
        f"{dict(outage)}; {len(acked)} items acknowledged"
    )
    assert answered_after_restart >= 3, "the shard did not come back"
    assert set(codes) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}, codes
    # never a partial answer: UNAVAILABLE, or the caller's deadline while Serve holds the call
    # for the restarting replica
    assert set(outage) <= {"OK", "UNAVAILABLE", "DEADLINE_EXCEEDED"}, outage
    assert len(hits) == 5
    got: set[str] = set()
    for start in range(0, len(acked), 500):
        reply = stub.Get(
            search_pb2.GetRequest(collection="fault", ids=acked[start : start + 500]),
            metadata=SEARCH,
            timeout=60,
        )
        got.update(i.id for i in reply.items)
    assert got == set(acked), f"{len(set(acked) - got)} acknowledged items lost"


def test_tokens_are_checked_through_the_ray_proxy(ray_search) -> None:  # type: ignore[no-untyped-def]
    stub = ray_search
    ask = search_pb2.ListCollectionsRequest()
    with pytest.raises(grpc.RpcError) as err:
        stub.ListCollections(ask, metadata=(("application", "search"),), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    read = (("application", "search"), ("authorization", f"Bearer {READ_TOKEN}"))
    stub.ListCollections(ask, metadata=read, timeout=30)
    with pytest.raises(grpc.RpcError) as err:
        stub.DropCollection(
            search_pb2.DropCollectionRequest(collection="fault"), metadata=read, timeout=30
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
