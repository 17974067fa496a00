"""The search service with real encoder servers on loopback: Tux Paint pictures, sounds and
captions indexed through the encoders, queried by sound, picture, text, vector and id."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import struct_pb2
from synesthesia.modality import Modality
from synesthesia.services.search.app import SearchApp
from synesthesia.services.search.settings import SearchSettings
from synesthesia.v1 import common_pb2, encoder_pb2, encoder_pb2_grpc, search_pb2, search_pb2_grpc

from tests.servers import running, unused_port
from tests.services.conftest import start_encoders

IMAGE, AUDIO, TEXT = common_pb2.MODALITY_IMAGE, common_pb2.MODALITY_AUDIO, common_pb2.MODALITY_TEXT


def struct(d: dict) -> struct_pb2.Struct:  # type: ignore[type-arg]
    s = struct_pb2.Struct()
    s.update(d)
    return s


def start_search(
    stack: ExitStack, data_dir: Path, targets: dict[Modality, str], **kw: object
) -> search_pb2_grpc.SearchServiceStub:
    settings = SearchSettings(
        port=0,
        data_dir=data_dir,
        text_encoder=targets.get(Modality.TEXT, ""),
        image_encoder=targets.get(Modality.IMAGE, ""),
        audio_encoder=targets.get(Modality.AUDIO, ""),
        **kw,
    )

    async def start():  # type: ignore[no-untyped-def]
        app = SearchApp(settings)
        server = await app.start()
        return server, app

    class _Closer:
        def __init__(self, app: SearchApp) -> None:
            self.app = app

        async def close(self) -> None:
            await self.app.stop(0)

    ctx = running(start)
    server, app = stack.enter_context(ctx)
    app.close = _Closer(app).close  # type: ignore[attr-defined]
    channel = stack.enter_context(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
    stub = search_pb2_grpc.SearchServiceStub(channel)
    stub.target = f"127.0.0.1:{server.port}"  # type: ignore[attr-defined]
    return stub


@pytest.fixture(scope="module")
def triples(data_dir: Path) -> list[dict]:  # type: ignore[type-arg]
    root = data_dir / "tuxpaint_stamps"
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    picked = [r for r in rows if r["category"].startswith("animals")][:12]
    assert len(picked) == 12
    for r in picked:
        r["image_bytes"] = (root / r["image"]).read_bytes()
        r["audio_bytes"] = (root / r["audio"]).read_bytes()
    return picked


@pytest.fixture(scope="module")
def search(
    tmp_path_factory: pytest.TempPathFactory,
    encoder_targets: dict[Modality, str],
    triples: list[dict],
) -> Iterator[search_pb2_grpc.SearchServiceStub]:  # type: ignore[type-arg]
    with ExitStack() as stack:
        stub = start_search(stack, tmp_path_factory.mktemp("search"), encoder_targets)
        stub.CreateCollection(
            search_pb2.CreateCollectionRequest(config=search_pb2.CollectionConfig(name="tux")),
            timeout=30,
        )
        items = []
        for r in triples:
            meta = {"label": r["label"], "category": r["category"], "caption": r["caption"]}
            items += [
                search_pb2.UpsertItem(
                    id=f"{r['label']}.png",
                    data=r["image_bytes"],
                    modality=IMAGE,
                    metadata=struct({**meta, "kind": "picture"}),
                ),
                search_pb2.UpsertItem(
                    id=f"{r['label']}.ogg",
                    data=r["audio_bytes"],
                    modality=AUDIO,
                    metadata=struct({**meta, "kind": "sound"}),
                ),
                search_pb2.UpsertItem(
                    id=f"{r['label']}.txt",
                    text=r["caption"],
                    metadata=struct({**meta, "kind": "caption"}),
                ),
            ]
        reply = stub.Upsert(
            search_pb2.UpsertRequest(collection="tux", items=items[:18]), timeout=120
        )
        assert list(reply.ids) == [it.id for it in items[:18]]
        chunks = [items[18:27], items[27:]]
        acks = list(
            stub.UpsertStream(
                iter(search_pb2.UpsertStreamRequest(collection="tux", items=c) for c in chunks),
                timeout=120,
            )
        )
        assert [list(a.ids) for a in acks] == [[it.id for it in c] for c in chunks]
        yield stub


def query(stub: search_pb2_grpc.SearchServiceStub, **kw: object) -> search_pb2.QueryResponse:
    return stub.Query(search_pb2.QueryRequest(collection="tux", **kw), timeout=60)


def check_ranked(reply: search_pb2.QueryResponse) -> None:
    scores = [h.score for h in reply.hits]
    assert scores == sorted(scores, reverse=True)


def test_describe_and_list(search: search_pb2_grpc.SearchServiceStub) -> None:
    info = search.DescribeCollection(search_pb2.DescribeCollectionRequest(collection="tux"))
    assert info.count == 36 and info.config.dim == 384
    assert info.config.model_id.startswith("synesthesia-minilm@") and info.bytes_on_disk > 36 * 1536
    names = [
        c.name for c in search.ListCollections(search_pb2.ListCollectionsRequest()).collections
    ]
    assert "tux" in names


@pytest.mark.parametrize("kind", ["audio", "image", "text"])
def test_query_by_media_finds_itself_with_metadata(
    search: search_pb2_grpc.SearchServiceStub,
    triples: list[dict],
    kind: str,  # type: ignore[type-arg]
) -> None:
    r = triples[5]
    content = {
        "audio": {"audio": r["audio_bytes"]},
        "image": {"image": r["image_bytes"]},
        "text": {"text": r["caption"]},
    }[kind]
    proto = {"audio": AUDIO, "image": IMAGE, "text": TEXT}[kind]
    suffix = {"audio": ".ogg", "image": ".png", "text": ".txt"}[kind]
    reply = query(search, k=5, modalities=[proto], **content)
    check_ranked(reply)
    assert len(reply.hits) == 5 and all(h.modality == proto for h in reply.hits)
    top = reply.hits[0]
    assert top.id == r["label"] + suffix and math.isclose(top.score, 1.0, abs_tol=1e-4)
    assert dict(top.metadata)["label"] == r["label"]
    everything = query(search, k=36, **content)
    check_ranked(everything)
    assert {h.modality for h in everything.hits} == {IMAGE, AUDIO, TEXT}


def test_filters_and_query_by_id(
    search: search_pb2_grpc.SearchServiceStub, triples: list[dict]
) -> None:  # type: ignore[type-arg]
    label = triples[2]["label"]
    reply = query(search, text="an animal", k=10, filter=struct({"metadata": {"label": label}}))
    assert sorted(h.id for h in reply.hits) == sorted(
        f"{label}{s}" for s in (".ogg", ".png", ".txt")
    )
    sounds = query(
        search, text="an animal", k=4, filter=struct({"metadata": {"kind": {"in": ["sound"]}}})
    )
    assert len(sounds.hits) == 4 and all(h.id.endswith(".ogg") for h in sounds.hits)
    by_id = query(search, id=f"{label}.png", k=3, modalities=[IMAGE])
    assert len(by_id.hits) == 3 and f"{label}.png" not in [h.id for h in by_id.hits]
    check_ranked(by_id)


def test_get_returns_the_encoders_vector(
    search: search_pb2_grpc.SearchServiceStub,
    encoder_targets: dict[Modality, str],
    triples: list[dict],
) -> None:  # type: ignore[type-arg]
    r = triples[0]
    got = search.Get(search_pb2.GetRequest(collection="tux", ids=[f"{r['label']}.ogg", "nope"]))
    assert [i.id for i in got.items] == [f"{r['label']}.ogg"]
    with grpc.insecure_channel(encoder_targets[Modality.AUDIO]) as ch:
        direct = encoder_pb2_grpc.EncoderServiceStub(ch).Embed(
            encoder_pb2.EmbedRequest(
                modality=AUDIO, items=[encoder_pb2.Item(data=r["audio_bytes"])]
            )
        )
    np.testing.assert_allclose(got.items[0].vector, direct.embeddings[0].values, atol=1e-6)
    assert dict(got.items[0].metadata)["kind"] == "sound"


def _count(stub: search_pb2_grpc.SearchServiceStub, name: str = "tux") -> int:
    return stub.DescribeCollection(search_pb2.DescribeCollectionRequest(collection=name)).count


def test_bad_input_gets_the_right_code_and_writes_nothing(
    search: search_pb2_grpc.SearchServiceStub,
) -> None:
    before = _count(search)
    good = search_pb2.UpsertItem(
        id="ok", vector=search_pb2.Vector(values=[0.05] * 384), modality=IMAGE
    )
    cases = [
        (
            "wrong dim",
            lambda: search.Upsert(
                search_pb2.UpsertRequest(
                    collection="tux",
                    items=[
                        good,
                        search_pb2.UpsertItem(
                            id="short", vector=search_pb2.Vector(values=[0.1] * 10), modality=IMAGE
                        ),
                    ],
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "384",
        ),
        (
            "nan",
            lambda: search.Upsert(
                search_pb2.UpsertRequest(
                    collection="tux",
                    items=[
                        good,
                        search_pb2.UpsertItem(
                            id="nan",
                            vector=search_pb2.Vector(values=[float("nan")] + [0.0] * 383),
                            modality=IMAGE,
                        ),
                    ],
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "finite",
        ),
        (
            "inf query",
            lambda: query(search, vector=search_pb2.Vector(values=[math.inf] * 384), k=3),
            grpc.StatusCode.INVALID_ARGUMENT,
            "finite",
        ),
        (
            "unknown collection",
            lambda: search.Query(search_pb2.QueryRequest(collection="nope", text="x", k=1)),
            grpc.StatusCode.NOT_FOUND,
            "nope",
        ),
        (
            "duplicate collection",
            lambda: search.CreateCollection(
                search_pb2.CreateCollectionRequest(
                    config=search_pb2.CollectionConfig(name="tux", dim=384)
                )
            ),
            grpc.StatusCode.ALREADY_EXISTS,
            "tux",
        ),
        (
            "malformed filter",
            lambda: query(
                search, text="x", k=3, filter=struct({"metadata": {"label": {"approx": 1}}})
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "approx",
        ),
        ("k zero", lambda: query(search, text="x", k=0), grpc.StatusCode.INVALID_ARGUMENT, "k"),
        (
            "k too big",
            lambda: query(search, text="x", k=100_000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "1000",
        ),
        (
            "bad media",
            lambda: search.Upsert(
                search_pb2.UpsertRequest(
                    collection="tux",
                    items=[
                        good,
                        search_pb2.UpsertItem(id="junk.png", data=b"not an image", modality=IMAGE),
                    ],
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "junk.png",
        ),
        (
            "other model",
            lambda: search.Upsert(
                search_pb2.UpsertRequest(
                    collection="tux",
                    items=[
                        search_pb2.UpsertItem(
                            id="m",
                            vector=search_pb2.Vector(values=[0.05] * 384, model_id="other-model"),
                            modality=IMAGE,
                        )
                    ],
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "other-model",
        ),
        (
            "no modality",
            lambda: search.Upsert(
                search_pb2.UpsertRequest(
                    collection="tux",
                    items=[
                        search_pb2.UpsertItem(id="x", vector=search_pb2.Vector(values=[0.05] * 384))
                    ],
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "modality",
        ),
    ]
    for name, call, code, fragment in cases:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == code, (name, err.value.details())
        assert fragment in err.value.details(), (name, err.value.details())
    assert _count(search) == before


def test_media_for_an_unconfigured_encoder_is_failed_precondition(
    tmp_path: Path,
    encoder_targets: dict[Modality, str],
) -> None:
    with ExitStack() as stack:
        stub = start_search(stack, tmp_path, {Modality.TEXT: encoder_targets[Modality.TEXT]})
        stub.CreateCollection(
            search_pb2.CreateCollectionRequest(
                config=search_pb2.CollectionConfig(name="c", dim=384)
            )
        )
        with pytest.raises(grpc.RpcError) as err:
            stub.Query(search_pb2.QueryRequest(collection="c", image=b"\x89PNG", k=1), timeout=10)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "image encoder" in err.value.details()


def test_encoders_down_then_back(tmp_path: Path) -> None:
    ports = {m: unused_port() for m in Modality}
    targets = {m: f"127.0.0.1:{p}" for m, p in ports.items()}
    with ExitStack() as stack:
        stub = start_search(stack, tmp_path, targets, encoder_retries=1, encoder_timeout_s=5)
        stub.CreateCollection(
            search_pb2.CreateCollectionRequest(
                config=search_pb2.CollectionConfig(name="c", dim=384)
            )
        )
        vec = search_pb2.Vector(values=[1.0] + [0.0] * 383)
        stub.Upsert(
            search_pb2.UpsertRequest(
                collection="c", items=[search_pb2.UpsertItem(id="v", vector=vec, modality=TEXT)]
            )
        )
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            stub.Query(search_pb2.QueryRequest(collection="c", text="a dog", k=1), timeout=3)
        assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
        assert time.monotonic() - t0 < 3.5
        assert (
            stub.Query(search_pb2.QueryRequest(collection="c", vector=vec, k=1)).hits[0].id == "v"
        )
        with ExitStack() as encoders:
            start_encoders(encoders, ports)
            back = time.monotonic()
            while True:  # the search service reconnects by itself (backoff <= 1 s)
                try:
                    reply = stub.Query(
                        search_pb2.QueryRequest(collection="c", text="a dog", k=1), timeout=30
                    )
                    break
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
                    assert time.monotonic() - back < 5, "media queries did not come back"
                    time.sleep(0.2)
            assert [h.id for h in reply.hits] == ["v"]


def test_index_folder_is_resumable_and_search_prints_a_table(
    search: search_pb2_grpc.SearchServiceStub,
    triples: list[dict],
    tmp_path: Path,  # type: ignore[type-arg]
    capsys: pytest.CaptureFixture[str],
) -> None:
    from synesthesia.apps.indexing import index_folder
    from synesthesia.apps.search_cli import search_main
    from synesthesia.client import SearchClient

    for r in triples[:4]:
        (tmp_path / f"{r['label']}.png").write_bytes(r["image_bytes"])
        (tmp_path / f"{r['label']}.ogg").write_bytes(r["audio_bytes"])
        (tmp_path / f"{r['label']}.txt").write_text(r["caption"])  # their caption, not an item
    (tmp_path / "notes.md").write_text("ignored: not a known extension")
    target = search.target  # type: ignore[attr-defined]
    with SearchClient(target) as client:
        done = index_folder(client, tmp_path, "folder", batch=5, progress=False)
        assert (done.added, done.already, done.rejected) == (8, 0, [])
        done = index_folder(client, tmp_path, "folder", batch=5, progress=False)
        assert (done.added, done.already) == (0, 8)
    assert _count(search, "folder") == 8
    sound = tmp_path / f"{triples[1]['label']}.ogg"
    rc = search_main(
        ["-c", "folder", "--audio", str(sound), "--only", "audio", "-k", "2", "--address", target]
    )
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and len(out) == 3 and out[1].split()[:3] == ["1", "1.000", "audio"]
    assert triples[1]["caption"].strip().splitlines()[0][:50] in out[1]


def test_classify_through_the_encoders(
    search: search_pb2_grpc.SearchServiceStub,
    triples: list[dict],  # type: ignore[type-arg]
) -> None:
    labels = ["dog", "piano", "volcano"]
    reply = search.Classify(
        search_pb2.ClassifyRequest(text="a puppy barking at the mailman", labels=labels),
        timeout=60,
    )
    assert reply.labels[0].label == "dog"
    assert reply.model_id.startswith("synesthesia-minilm")
    for kind, key in (("image", "image_bytes"), ("audio", "audio_bytes")):
        reply = search.Classify(
            search_pb2.ClassifyRequest(
                labels=labels, template="a {}", temperature=0.05, **{kind: triples[0][key]}
            ),
            timeout=60,
        )
        assert sorted(lab.label for lab in reply.labels) == sorted(labels)
        assert abs(sum(lab.probability for lab in reply.labels) - 1) < 1e-4
    with pytest.raises(grpc.RpcError) as err:
        search.Classify(search_pb2.ClassifyRequest(audio=b"not audio", labels=labels), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
