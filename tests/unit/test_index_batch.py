"""Collection.query_batch: one FAISS call for many query vectors, the same hits as one query
each, for every index kind and query path (no filter, a selective filter scored exactly, a
filter searched with a selector, rerank, dead labels)."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
from synesthesia.errors import InvalidInput
from synesthesia.index import IndexManager, UpsertItem

faiss.omp_set_num_threads(1)

DIM = 16
N = 2000

PARAMS = {
    "flat": {},
    "hnsw": {"M": 16, "ef_construction": 40, "ef_search": 32},
    "ivf-pq": {"nlist": 16, "m": 4, "nbits": 6, "nprobe": 4, "train_min": 1000, "rerank": 4},
}


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    rng = np.random.default_rng(5)
    vecs = rng.standard_normal((N + 20, DIM)).astype(np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf-pq"])
@pytest.mark.parametrize(
    "flt",
    [None, {"metadata": {"bucket": 3}}, {"metadata": {"bucket": {"lt": 60}}}],
    ids=["none", "selective", "broad"],
)
def test_a_batch_finds_what_single_queries_find(
    tmp_path: Path,
    vectors: np.ndarray,
    kind: str,
    flt: dict | None,  # type: ignore[type-arg]
) -> None:
    with IndexManager(tmp_path, synchronous="NORMAL") as mgr:
        mgr.create_collection("c", DIM, kind=kind, params=PARAMS[kind])
        coll = mgr.collection("c")
        coll.upsert(
            [UpsertItem(f"v{i}", vectors[i], "image", {"bucket": i % 100}) for i in range(N)]
        )
        coll.delete([f"v{i}" for i in range(0, N, 7)])  # dead labels (kept in hnsw)
        queries = vectors[N:]
        batch = coll.query_batch(queries, 10, flt)
        single = [coll.query(q, 10, flt) for q in queries]
    assert len(batch) == len(queries)
    for got, want in zip(batch, single, strict=True):
        assert [h.id for h in got] == [h.id for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)
        assert [h.metadata for h in got] == [h.metadata for h in want]


def test_batch_edges(tmp_path: Path, vectors: np.ndarray) -> None:
    with IndexManager(tmp_path, synchronous="NORMAL") as mgr:
        mgr.create_collection("c", DIM, kind="hnsw")
        coll = mgr.collection("c")
        assert coll.query_batch(vectors[:3], 5) == [[], [], []]  # empty collection
        coll.upsert([UpsertItem(f"v{i}", vectors[i], "text") for i in range(50)])
        assert coll.query_batch(np.zeros((0, DIM), np.float32), 5) == []
        assert coll.query_batch([], 5) == []
        bad = vectors[:4].copy()
        bad[2, 1] = np.nan
        with pytest.raises(InvalidInput, match=r"item 2 \(id 'query'\): vector contains NaN"):
            coll.query_batch(bad, 5)
        with pytest.raises(InvalidInput, match=r"item 1 .*dimension 3, expected 16"):
            coll.query_batch([vectors[0], [1.0, 2.0, 3.0]], 5)
        with pytest.raises(InvalidInput, match="k must be between"):
            coll.query_batch(vectors[:2], 0)
