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
    def __init__(self) -> None:
        self.calls = 0
        self.info_calls = 0

    async def embed(
        self,
        modality: Modality,
        contents: Sequence[str | bytes],
        ids: Sequence[str],
        deadline: float | None,
    ) -> EncodedBatch:
        self.calls += 1
        rng = np.random.default_rng(len(contents))
        v = rng.normal(size=(len(contents), DIM)).astype(np.float32)
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
