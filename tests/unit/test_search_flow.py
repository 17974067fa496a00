"""The one search flow (services/search/flow.py) with a counting fake encoder: everything that can
be checked without an encoder is refused before the first embedding call."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from synesthesia.errors import FailedPrecondition, InvalidInput, NotFound
from synesthesia.index import IndexManager
from synesthesia.modality import Modality
from synesthesia.protoconv import dict_to_struct, modality_to_proto
from synesthesia.services.search.flow import EncodedBatch, EncoderInfo, SearchFlow
from synesthesia.services.search.store import LocalStore
from synesthesia.v1 import search_pb2

DIM = 8


class CountingEncoders:
    """The same content always gets the same vector; each call's modality is recorded."""

    def __init__(self) -> None:
        self.calls = 0
        self.info_calls = 0
        self.modalities: list[Modality] = []

    async def embed(
        self,
        modality: Modality,
        contents: Sequence[str | bytes],
        ids: Sequence[str],
        deadline: float | None,
    ) -> EncodedBatch:
        self.calls += 1
        self.modalities.append(modality)
        rows = []
        for c in contents:
            seed = int.from_bytes(c.encode() if isinstance(c, str) else c, "big") % 2**32
            rows.append(np.random.default_rng(seed).normal(size=DIM))
        v = np.asarray(rows, np.float32).reshape(len(contents), DIM)
        return EncodedBatch(v / np.linalg.norm(v, axis=1, keepdims=True), "fake-model")

    async def info(self) -> EncoderInfo:
        self.info_calls += 1
        return EncoderInfo("fake-model", DIM)


@pytest.fixture
def flow(tmp_path: Path) -> Iterator[tuple[SearchFlow, CountingEncoders]]:
    manager = IndexManager(tmp_path / "index")
    store = LocalStore(manager)
    encoders = CountingEncoders()
    f = SearchFlow(store, encoders, max_items_per_request=16)
    run(f.create(search_pb2.CreateCollectionRequest(config=search_pb2.CollectionConfig(name="c"))))
    encoders.info_calls = 0
    yield f, encoders
    store.close()
    manager.close()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"k": 0}, "k must be between"),
        ({"k": 100_000}, "k must be between"),
        ({"filter": dict_to_struct({"approx": 1})}, "approx"),
        ({"filter": dict_to_struct({"metadata": {"x": {"near": 1}}})}, "near"),
        ({"filter": dict_to_struct({"modality": "smell"})}, "smell"),
        ({"filter": dict_to_struct({"x": float("nan")})}, "finite"),
        ({"recall_target": 1.5}, r"recall_target must be in \(0, 1\]"),
        ({"recall_target": -0.5}, "recall_target"),
        ({"recall_target": float("nan")}, "recall_target"),
    ],
)
def test_a_bad_query_is_refused_before_the_encoder_is_called(
    flow: tuple[SearchFlow, CountingEncoders],
    changes: dict,
    message: str,  # type: ignore[type-arg]
) -> None:
    f, enc = flow
    request = search_pb2.QueryRequest(collection="c", text="a barking dog", k=5)
    for key, value in changes.items():
        if key == "filter":
            request.filter.CopyFrom(value)
        else:
            setattr(request, key, value)
    with pytest.raises(InvalidInput, match=message):
        run(f.query(request, None))
    assert enc.calls == 0


def test_unknown_collection_is_not_found_before_the_encoder_is_called(
    flow: tuple[SearchFlow, CountingEncoders],
) -> None:
    f, enc = flow
    with pytest.raises(NotFound):
        run(f.query(search_pb2.QueryRequest(collection="nope", audio=b"RIFF", k=3), None))
    with pytest.raises(NotFound):
        run(f.upsert("nope", [search_pb2.UpsertItem(id="a", text="x")], None))
    assert enc.calls == 0


def _vector_item(item_id: str, dim: int = DIM) -> search_pb2.UpsertItem:
    return search_pb2.UpsertItem(
        id=item_id,
        vector=search_pb2.Vector(values=[1.0] + [0.0] * (dim - 1)),
        modality=modality_to_proto(Modality.IMAGE),
    )


@pytest.mark.parametrize(
    "bad, message",
    [
        (_vector_item("v", dim=DIM + 1), "dimension"),
        (_vector_item("t"), "duplicate id"),
        (search_pb2.UpsertItem(id="", text="x"), "non-empty"),
        (search_pb2.UpsertItem(id="e"), "no content"),
        (search_pb2.UpsertItem(id="m", data=b"x"), "modality is required"),
        (
            search_pb2.UpsertItem(
                id="n", text="x", metadata=dict_to_struct({"score": float("inf")})
            ),
            "finite",
        ),
        (
            search_pb2.UpsertItem(id="d", text="x", metadata=dict_to_struct({"a": {"b": 1}})),
            "string",
        ),
    ],
)
def test_a_bad_item_fails_the_upsert_before_any_embedding(
    flow: tuple[SearchFlow, CountingEncoders], bad: search_pb2.UpsertItem, message: str
) -> None:
    f, enc = flow
    items = [search_pb2.UpsertItem(id="t", text="a barking dog"), bad]
    with pytest.raises(InvalidInput, match=message) as err:
        run(f.upsert("c", items, None))
    assert "item 1" in str(err.value)
    assert enc.calls == 0
    assert run(f.describe("c")).count == 0


def test_a_foreign_model_vector_fails_before_any_embedding(
    flow: tuple[SearchFlow, CountingEncoders],
) -> None:
    f, enc = flow
    item = _vector_item("v")
    item.vector.model_id = "other-model"
    with pytest.raises(FailedPrecondition, match="other-model"):
        run(f.upsert("c", [search_pb2.UpsertItem(id="t", text="x"), item], None))
    assert enc.calls == 0


def test_media_and_vectors_are_written_together_and_found(
    flow: tuple[SearchFlow, CountingEncoders],
) -> None:
    f, enc = flow
    items = [
        search_pb2.UpsertItem(
            id="t", text="a barking dog", metadata=dict_to_struct({"year": 2020})
        ),
        _vector_item("v"),
        search_pb2.UpsertItem(id="a", data=b"sound", modality=modality_to_proto(Modality.AUDIO)),
    ]
    ids, seq = run(f.upsert("c", items, None))
    assert ids == ["t", "v", "a"] and seq >= 3
    assert enc.calls == 2  # one call per modality with media (text, audio)
    hits = run(f.query(search_pb2.QueryRequest(collection="c", id="v", k=5), None)).hits
    assert {h.id for h in hits} == {"t", "a"}  # the item itself is left out
    got = run(f.get(search_pb2.GetRequest(collection="c", ids=["t"]))).items
    assert got[0].metadata["year"] == 2020


def test_create_with_dim_zero_asks_the_encoders_only_for_a_valid_name(
    flow: tuple[SearchFlow, CountingEncoders],
) -> None:
    f, enc = flow
    with pytest.raises(InvalidInput):
        run(
            f.create(
                search_pb2.CreateCollectionRequest(
                    config=search_pb2.CollectionConfig(name="bad name\n")
                )
            )
        )
    assert enc.info_calls == 0
    reply = run(
        f.create(search_pb2.CreateCollectionRequest(config=search_pb2.CollectionConfig(name="d")))
    )
    assert (reply.config.dim, reply.config.model_id) == (DIM, "fake-model")
    assert enc.info_calls == 1


def test_classify_ranks_the_labels_with_probabilities(
    flow: tuple[SearchFlow, CountingEncoders],
) -> None:
    f, enc = flow
    reply = run(
        f.classify(
            search_pb2.ClassifyRequest(
                audio=b"bark", labels=["dog", "cat", "car"], template="the sound of a {}."
            ),
            None,
        )
    )
    assert sorted(lab.label for lab in reply.labels) == ["car", "cat", "dog"]
    scores = [lab.score for lab in reply.labels]
    assert scores == sorted(scores, reverse=True)
    probs = [lab.probability for lab in reply.labels]
    assert abs(sum(probs) - 1) < 1e-5 and probs == sorted(probs, reverse=True)
    assert reply.model_id == "fake-model" and enc.calls == 2


@pytest.mark.parametrize(
    "request_kw, message",
    [
        ({"labels": ["dog"]}, "needs an item"),
        ({"text": "x"}, "at least one label"),
        ({"text": "x", "labels": ["dog", ""]}, "label 1 is empty"),
        ({"text": "x", "labels": ["dog", "dog"]}, "repeats"),
        ({"text": "x", "labels": ["dog"], "template": "a photo"}, "exactly once"),
        ({"text": "x", "labels": ["dog"], "temperature": -1}, "temperature"),
        ({"text": "x", "labels": [f"l{i}" for i in range(1001)]}, "limit"),
    ],
)
def test_a_bad_classify_request_costs_no_encoder_call(
    flow: tuple[SearchFlow, CountingEncoders],
    request_kw: dict,
    message: str,  # type: ignore[type-arg]
) -> None:
    f, enc = flow
    with pytest.raises(InvalidInput, match=message):
        run(f.classify(search_pb2.ClassifyRequest(**request_kw), None))
    assert enc.calls == 0


# -- QueryBatch -------------------------------------------------------------------------------
class CountingStore(LocalStore):
    def __init__(self, manager: IndexManager) -> None:
        super().__init__(manager)
        self.batches: list[int] = []

    async def query_batch(self, collection, vectors, k, flt, recall):  # type: ignore[no-untyped-def]
        self.batches.append(len(vectors))
        return await super().query_batch(collection, vectors, k, flt, recall)


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[SearchFlow, CountingEncoders, CountingStore]]:
    manager = IndexManager(tmp_path / "index")
    store = CountingStore(manager)
    encoders = CountingEncoders()
    f = SearchFlow(store, encoders, max_items_per_request=16)
    for name in ("c", "d"):
        config = search_pb2.CollectionConfig(name=name, dim=DIM, model_id="fake-model")
        run(f.create(search_pb2.CreateCollectionRequest(config=config)))
    rng = np.random.default_rng(3)
    for name in ("c", "d"):
        items = [
            search_pb2.UpsertItem(
                id=f"{name}{i}",
                vector=search_pb2.Vector(values=rng.normal(size=DIM).tolist()),
                modality=modality_to_proto([Modality.IMAGE, Modality.AUDIO][i % 2]),
                metadata=dict_to_struct({"even": i % 2 == 0}),
            )
            for i in range(16)
        ]
        run(f.upsert(name, items, None))
    yield f, encoders, store
    store.close()
    manager.close()


def _vector_query(collection: str = "c", seed: int = 0, **kw) -> search_pb2.QueryRequest:  # type: ignore[no-untyped-def]
    values = np.random.default_rng(seed).normal(size=DIM).tolist()
    return search_pb2.QueryRequest(
        collection=collection, vector=search_pb2.Vector(values=values), **kw
    )


def test_a_batch_answers_as_single_queries_do_with_one_encoder_call_per_modality(
    filled: tuple[SearchFlow, CountingEncoders, CountingStore],
) -> None:
    f, enc, store = filled
    even = dict_to_struct({"metadata": {"even": True}})
    queries = [
        search_pb2.QueryRequest(collection="c", text="a barking dog", k=3),
        _vector_query(seed=1, k=4),
        search_pb2.QueryRequest(collection="d", image=b"a picture", k=5),
        _vector_query(seed=2, k=4),
        search_pb2.QueryRequest(collection="c", text="rain on a roof", k=3, filter=even),
        search_pb2.QueryRequest(collection="c", id="c3", k=2),
        _vector_query("d", seed=3, k=4),
        search_pb2.QueryRequest(collection="c", audio=b"a sound", k=6, modalities=[2]),
        search_pb2.QueryRequest(collection="d", text="a barking dog", k=3),
        _vector_query(seed=4, k=4, modalities=[3]),
    ]
    reply = run(f.query_batch(search_pb2.QueryBatchRequest(queries=queries), None))
    assert sorted(enc.modalities) == sorted([Modality.TEXT, Modality.IMAGE, Modality.AUDIO])
    # the vector queries of c with k=4 and no filter: one store call (queries 1 and 3)
    assert 2 in store.batches
    assert len(reply.results) == len(queries)
    enc.calls = 0
    for query, result in zip(queries, reply.results, strict=True):
        alone = run(f.query(query, None))
        assert [h.id for h in result.hits] == [h.id for h in alone.hits]
        assert [h.score for h in result.hits] == pytest.approx([h.score for h in alone.hits])
        assert [dict(h.metadata) for h in result.hits] == [dict(h.metadata) for h in alone.hits]
    assert enc.calls == 5  # single queries: one encoder call each


@pytest.mark.parametrize(
    "bad, code, message",
    [
        (search_pb2.QueryRequest(collection="c", k=3), InvalidInput, "query 2: query needs"),
        (_vector_query(k=0), InvalidInput, "query 2: k must be between"),
        (_vector_query("nope", k=3), NotFound, "query 2: collection 'nope'"),
        (
            search_pb2.QueryRequest(collection="c", vector=search_pb2.Vector(values=[1.0]), k=3),
            InvalidInput,
            "query 2: vector has dimension 1, expected 8",
        ),
        (
            search_pb2.QueryRequest(
                collection="c",
                k=3,
                vector=search_pb2.Vector(values=[0.0] * DIM, model_id="other-model"),
            ),
            FailedPrecondition,
            "query 2: collection 'c' holds vectors of model",
        ),
        (
            search_pb2.QueryRequest(
                collection="c", text="x", k=3, filter=dict_to_struct({"approx": 1})
            ),
            InvalidInput,
            "query 2: filter has unknown keys",
        ),
        (search_pb2.QueryRequest(collection="c", id="", k=3), InvalidInput, "query 2: id must"),
    ],
)
def test_a_bad_query_fails_the_batch_by_its_number_before_any_encoder_call(
    filled: tuple[SearchFlow, CountingEncoders, CountingStore],
    bad: search_pb2.QueryRequest,
    code: type,
    message: str,
) -> None:
    f, enc, store = filled
    queries = [search_pb2.QueryRequest(collection="c", text="dog", k=3), _vector_query(k=3), bad]
    with pytest.raises(code) as err:
        run(f.query_batch(search_pb2.QueryBatchRequest(queries=queries), None))
    assert str(err.value).startswith(message)
    assert enc.calls == 0 and store.batches == []


def test_a_batch_is_bounded(filled: tuple[SearchFlow, CountingEncoders, CountingStore]) -> None:
    f, enc, _ = filled
    with pytest.raises(InvalidInput, match="query batch has no queries"):
        run(f.query_batch(search_pb2.QueryBatchRequest(), None))
    many = search_pb2.QueryBatchRequest(queries=[_vector_query(k=1)] * 17)
    with pytest.raises(InvalidInput, match="query batch has 17 queries; the limit is 16"):
        run(f.query_batch(many, None))
    run(f.query_batch(search_pb2.QueryBatchRequest(queries=[_vector_query(k=1000)] * 16), None))
    flow_limit = SearchFlow(f.store, enc, max_items_per_request=200)
    heavy = search_pb2.QueryBatchRequest(queries=[_vector_query(k=1000)] * 101)
    with pytest.raises(InvalidInput, match="asks for 101000 hits in all"):
        run(flow_limit.query_batch(heavy, None))
    assert enc.calls == 0


def test_an_encoder_refusal_names_the_query(
    filled: tuple[SearchFlow, CountingEncoders, CountingStore],
) -> None:
    f, enc, _ = filled

    async def refuse(modality, contents, ids, deadline):  # type: ignore[no-untyped-def]
        raise InvalidInput(f"item 1 (id {ids[1]!r}): not a decodable image")

    enc.embed = refuse  # type: ignore[method-assign]
    queries = [
        search_pb2.QueryRequest(collection="c", image=b"ok", k=3),
        _vector_query(k=3),
        search_pb2.QueryRequest(collection="c", image=b"broken", k=3),
    ]
    with pytest.raises(InvalidInput) as err:
        run(f.query_batch(search_pb2.QueryBatchRequest(queries=queries), None))
    assert str(err.value) == "query 2: not a decodable image"
