"""VectorIndex.search and its FAISS search parameters: each effort searches at its own efSearch
/ nprobe (widen scales it), a selector restricts its own search and never a later one, and an
index replaced in place (an ivf-pq index trained) is searched as what it now is."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from synesthesia.index.faiss_index import VectorIndex
from synesthesia.index.types import CollectionSpec

faiss.omp_set_num_threads(1)

DIM = 16


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, DIM)).astype(np.float32)
    q = rng.standard_normal((40, DIM)).astype(np.float32)
    return unit(x), unit(q)


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def reference(vi: VectorIndex, q: np.ndarray, k: int, ef: int) -> np.ndarray:
    """Labels FAISS finds with efSearch set on a fresh parameter object."""
    params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
    params.efSearch = ef
    return vi.index.search(q, k, params=params)[1]


def test_each_effort_searches_at_its_own_ef(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, q = data
    spec = CollectionSpec.create("c", DIM, "ip", "hnsw", {"M": 4, "ef_construction": 8})
    vi = VectorIndex(spec)
    vi.add(np.arange(len(x), dtype=np.int64), x)
    low, high = reference(vi, q, 10, 10), reference(vi, q, 10, 400)
    assert not np.array_equal(low, high)  # the efforts differ on this weak graph
    for _ in range(2):  # asked again: the same answers
        assert np.array_equal(vi.search(q, 10, None, 1.0, 10)[1], low)
        assert np.array_equal(vi.search(q, 10, None, 1.0, 400)[1], high)
    # widen scales the effort: 40 x 10 is the high effort's search
    assert np.array_equal(vi.search(q, 10, None, 40.0, 10)[1], high)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_a_selector_applies_to_its_search_only(
    kind: str, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, q = data
    spec = CollectionSpec.create("c", DIM, "ip", kind, {})
    vi = VectorIndex(spec)
    vi.add(np.arange(len(x), dtype=np.int64), x)
    plain = vi.search(q, 5, None, 1.0, 64)[1]
    banned = np.unique(plain)
    sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(banned))
    chosen = vi.search(q, 5, sel, 1.0, 64)[1]
    assert not np.isin(chosen, banned).any()
    assert np.array_equal(vi.search(q, 5, None, 1.0, 64)[1], plain)


def test_an_index_trained_in_place_is_searched_as_ivf(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, q = data
    params = {"nlist": 16, "m": 4, "nbits": 6, "nprobe": 1, "train_min": 1000}
    spec = CollectionSpec.create("c", DIM, "ip", "ivf-pq", params)
    vi = VectorIndex(spec)
    labels = np.arange(len(x), dtype=np.int64)
    vi.add(labels, x)
    assert vi.is_exact and vi.search(q, 5, None, 1.0, 1)[1].shape == (len(q), 5)
    vi.index = VectorIndex.trained_from(spec, x).index
    vi.add(labels, x)
    assert isinstance(vi.inner, faiss.IndexIVF) and not vi.is_exact
    one = vi.search(q, 10, None, 1.0, 1)[1]
    every = vi.search(q, 10, None, 1.0, 16)[1]  # nprobe = nlist: every list scanned
    ivf = faiss.extract_index_ivf(vi.index)
    ivf.nprobe = 16
    assert np.array_equal(every, vi.index.search(q, 10)[1])
    assert not np.array_equal(one, every)
