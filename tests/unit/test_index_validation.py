"""Bad input to index collections: the right error class, a message naming the item, and
nothing written."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
from synesthesia.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    SynesthesiaError,
)
from synesthesia.index import MAX_K, IndexManager, UpsertItem

faiss.omp_set_num_threads(1)

DIM = 8


@pytest.fixture
def mgr(tmp_path: Path):
    with IndexManager(tmp_path) as m:
        m.create_collection("c", DIM, kind="hnsw", model_id="model-a")
        m.collection("c").upsert([UpsertItem("keep", np.ones(DIM), "text", {"k": 1})])
        yield m


def good(i: int) -> UpsertItem:
    return UpsertItem(f"ok-{i}", np.full(DIM, i + 1.0), "image", {"i": i})


BAD_ITEMS = [
    (UpsertItem("x", np.ones(DIM + 1), "image"), InvalidInput, "dimension 9, expected 8"),
    (UpsertItem("x", np.ones((2, 4)), "image"), InvalidInput, "1-dimensional"),
    (UpsertItem("x", [1.0] * (DIM - 1) + [float("nan")], "image"), InvalidInput, "NaN"),
    (UpsertItem("x", [1.0] * (DIM - 1) + [float("inf")], "image"), InvalidInput, "infinite"),
    (UpsertItem("x", np.full(DIM, 1e39), "image"), InvalidInput, "infinite"),  # inf in float32
    (UpsertItem("x", ["a"] * DIM, "image"), InvalidInput, "not numeric"),
    (UpsertItem("", np.ones(DIM), "image"), InvalidInput, "non-empty string"),
    (UpsertItem("x" * 2000, np.ones(DIM), "image"), InvalidInput, "longer than"),
    (UpsertItem("x", np.ones(DIM), "smell"), InvalidInput, "unknown modality"),
    (UpsertItem("x", np.ones(DIM), "image", {"a": [1]}), InvalidInput, "string, number or bool"),
    (UpsertItem("x", np.ones(DIM), "image", {"a": {"b": 1}}), InvalidInput, "got dict"),
    (UpsertItem("x", np.ones(DIM), "image", {"a": None}), InvalidInput, "got NoneType"),
    (UpsertItem("x", np.ones(DIM), "image", {"a": float("nan")}), InvalidInput, "not finite"),
    (UpsertItem("x", np.ones(DIM), "image", {"": 1}), InvalidInput, "metadata key"),
    (UpsertItem("x", np.ones(DIM), "image", {"a": 2**70}), InvalidInput, "int64"),
    (UpsertItem("x", np.ones(DIM), "image", model_id="model-b"), FailedPrecondition, "model-b"),
]


@pytest.mark.parametrize(("bad", "error", "text"), BAD_ITEMS)
def test_bad_item_rejects_the_whole_batch(mgr, bad, error, text) -> None:
    coll = mgr.collection("c")
    before = coll.describe()
    with pytest.raises(error) as exc:
        coll.upsert([good(0), good(1), bad, good(3)])
    assert text in str(exc.value)
    assert "item 2" in str(exc.value)  # names the offending item
    after = coll.describe()
    assert (after.count, after.last_seq, after.index_ntotal) == (1, before.last_seq, 1)
    assert coll.get(["ok-0", "ok-1", "ok-3"]) == []


def test_duplicate_ids_in_one_batch(mgr) -> None:
    with pytest.raises(InvalidInput, match=r"item 2 \(id 'ok-0'\): duplicate id.*item 0"):
        mgr.collection("c").upsert([good(0), good(1), good(0)])
    assert mgr.describe("c").count == 1


def test_matching_model_id_and_none_are_accepted(mgr) -> None:
    coll = mgr.collection("c")
    coll.upsert([UpsertItem("a", np.ones(DIM), "audio", model_id="model-a")])
    coll.upsert([UpsertItem("b", np.ones(DIM), "audio", model_id=None)])
    assert coll.describe().count == 3


def test_collection_errors(mgr) -> None:
    with pytest.raises(AlreadyExists):
        mgr.create_collection("c", DIM)
    with pytest.raises(NotFound):
        mgr.collection("nope")
    with pytest.raises(NotFound):
        mgr.drop_collection("nope")
    with pytest.raises(InvalidInput, match="collection name"):
        mgr.create_collection("../etc", DIM)
    with pytest.raises(InvalidInput, match="dimension"):
        mgr.create_collection("d", 0)
    with pytest.raises(InvalidInput, match="metric"):
        mgr.create_collection("d", DIM, metric="manhattan")
    with pytest.raises(InvalidInput, match="index kind"):
        mgr.create_collection("d", DIM, kind="annoy")
    with pytest.raises(InvalidInput, match="no parameter 'nlist'"):
        mgr.create_collection("d", DIM, kind="hnsw", params={"nlist": 3})
    with pytest.raises(InvalidInput, match="must divide"):
        mgr.create_collection("d", 10, kind="ivf-pq", params={"m": 4})
    with pytest.raises(InvalidInput, match="outside"):
        mgr.create_collection("d", DIM, kind="hnsw", params={"M": 1})
    assert [s.name for s in mgr.list_collections()] == ["c"]


def test_dropped_collection_handle_fails_with_not_found(mgr) -> None:
    coll = mgr.collection("c")
    mgr.drop_collection("c")
    with pytest.raises(NotFound):
        coll.upsert([good(0)])
    with pytest.raises(NotFound):
        coll.query(np.ones(DIM), 1)


@pytest.mark.parametrize("k", [0, -1, MAX_K + 1, 2.5, True, "3"])
def test_bad_k(mgr, k) -> None:
    with pytest.raises(InvalidInput, match="k must"):
        mgr.collection("c").query(np.ones(DIM), k)


def test_bad_query_vector_and_unknown_id(mgr) -> None:
    coll = mgr.collection("c")
    with pytest.raises(InvalidInput, match="dimension 3"):
        coll.query(np.ones(3), 1)
    with pytest.raises(InvalidInput, match="NaN"):
        coll.query(np.full(DIM, np.nan), 1)
    with pytest.raises(NotFound, match="'ghost'"):
        coll.query_by_id("ghost", 1)
    with pytest.raises(InvalidInput):
        coll.get([""])
    with pytest.raises(InvalidInput):
        coll.delete("keep")  # one string, not a list


@pytest.mark.parametrize(
    ("flt", "text"),
    [
        ({"metadata": {"year": {"after": 3}}}, "unknown operator 'after'"),
        ({"metadata": {"year": {"in": 3}}}, "non-empty list"),
        ({"metadata": {"year": {"in": []}}}, "non-empty list"),
        ({"metadata": {"year": {"gte": True}}}, "number or a string"),
        ({"metadata": {"year": {"gte": [1]}}}, "number or a string"),
        ({"metadata": {"year": {}}}, "empty operator"),
        ({"metadata": {"year": [1, 2]}}, "string, number or bool"),
        ({"metadata": {"year": float("nan")}}, "finite"),
        ({"metadata": ["year"]}, "filter.metadata"),
        ({"modality": ["smell"]}, "unknown modality"),
        ({"modality": []}, "filter.modality"),
        ({"ids": "a"}, "filter.ids"),
        ({"where": {}}, "unknown keys ['where']"),
        ("{not json", "not valid JSON"),
        ([1, 2], "must be an object"),
    ],
)
def test_malformed_filters(mgr, flt, text) -> None:
    coll = mgr.collection("c")
    with pytest.raises(InvalidInput) as exc:
        coll.query(np.ones(DIM), 1, flt)
    assert text in str(exc.value)
    with pytest.raises(InvalidInput):
        coll.delete_where(flt)
    assert coll.describe().count == 1


def test_every_error_carries_a_grpc_code_name() -> None:
    for cls in (InvalidInput, NotFound, AlreadyExists, FailedPrecondition):
        assert issubclass(cls, SynesthesiaError)
        assert cls.code in {
            "INVALID_ARGUMENT",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "FAILED_PRECONDITION",
        }
