"""The filter language and filtered queries (selective filters must still return k)."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
from synesthesia.index import IndexManager, Tuning, UpsertItem, parse_filter
from synesthesia.modality import Modality

faiss.omp_set_num_threads(1)

DIM = 24
N = 3000
MODS = ["text", "image", "audio"]


def test_filter_semantics() -> None:
    md = {"kind": "dog", "year": 2004, "ok": True, "score": 0.5}
    img = Modality.IMAGE

    def m(spec: dict, modality: Modality = img, item_id: str = "a") -> bool:
        return parse_filter(spec).matches(item_id, modality, md)

    assert m({}) and m({"metadata": {}})
    assert m({"metadata": {"kind": "dog", "year": {"gte": 2000, "lte": 2004}}})
    assert not m({"metadata": {"year": {"gt": 2004}}})
    assert m({"metadata": {"year": {"lt": 2004.5}, "score": {"gte": 0.5}}})
    assert m({"metadata": {"kind": {"in": ["cat", "dog"]}}})
    assert not m({"metadata": {"kind": {"nin": ["cat", "dog"]}}})
    assert m({"metadata": {"kind": {"ne": "cat"}}})
    assert not m({"metadata": {"missing": {"ne": "cat"}}})  # a missing key fails every condition
    assert not m({"metadata": {"ok": 1}})  # no bool/int coercion
    assert not m({"metadata": {"year": "2004"}})  # no str/int coercion
    assert not m({"metadata": {"kind": {"gte": 3}}})  # string vs number range: no match
    assert m({"metadata": {"kind": {"gte": "cat"}}})  # strings compare lexicographically
    assert m({"modality": "image"}) and m({"modality": ["MODALITY_AUDIO", "image"]})
    assert not m({"modality": ["audio"]})
    assert m({"ids": ["a"]}) and not m({"ids": ["b"]})
    assert m('{"metadata": {"kind": "dog"}}')


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, list[UpsertItem]]:
    rng = np.random.default_rng(11)
    vecs = rng.standard_normal((N, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    its = [
        UpsertItem(f"v{i}", vecs[i], MODS[i % 3], {"bucket": i % 100, "even": i % 2 == 0})
        for i in range(N)
    ]
    return vecs, its


def brute(vecs: np.ndarray, q: np.ndarray, keep: np.ndarray, k: int, metric: str) -> list[str]:
    scores = vecs @ q if metric == "ip" else -np.square(vecs - q).sum(axis=1)
    scores = np.where(keep, scores, -np.inf)
    return [f"v{i}" for i in np.argsort(-scores, kind="stable")[:k]]


CASES = [
    ("flat", {}, "ip"),
    ("flat", {}, "l2"),
    ("hnsw", {"M": 16, "ef_construction": 40, "ef_search": 32}, "ip"),
    ("hnsw", {"M": 16, "ef_construction": 40, "ef_search": 32}, "l2"),
    ("ivf-pq", {"nlist": 16, "m": 6, "nbits": 6, "nprobe": 2, "train_min": 1000}, "ip"),
]


@pytest.mark.parametrize(("kind", "params", "metric"), CASES)
@pytest.mark.parametrize(
    ("flt", "keep_fn"),
    [
        ({"metadata": {"bucket": 7}}, lambda i: i % 100 == 7),  # 30 of 3000: exact path
        ({"metadata": {"bucket": {"lt": 5}}}, lambda i: i % 100 < 5),  # 150: selector path
        (
            {"modality": "audio", "metadata": {"even": True}},
            lambda i: i % 3 == 2 and i % 2 == 0,
        ),  # 500
    ],
)
def test_selective_filter_still_returns_k(
    tmp_path: Path, data, kind, params, metric, flt, keep_fn
) -> None:
    vecs, its = data
    k = 20
    keep = np.array([keep_fn(i) for i in range(N)])
    # exact_limit 100 sends the 150- and 500-item filters through the FAISS selector path
    with IndexManager(tmp_path, tuning=Tuning(exact_limit=100)) as mgr:
        mgr.create_collection("c", DIM, metric=metric, kind=kind, params=params)
        coll = mgr.collection("c")
        coll.upsert(its)
        assert coll.describe().trained
        rng = np.random.default_rng(12)
        overlap = []
        for _ in range(10):
            q = rng.standard_normal(DIM).astype(np.float32)
            hits = coll.query(q, k, flt)
            assert len(hits) == k
            assert all(keep[int(h.id[1:])] for h in hits)
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)
            h0 = hits[0]
            v = vecs[int(h0.id[1:])]
            exact = float(v @ q) if metric == "ip" else -float(np.square(v - q).sum())
            if kind != "ivf-pq":  # pq scores are approximate
                assert h0.score == pytest.approx(exact, rel=1e-4, abs=1e-4)
            assert h0.modality.value == MODS[int(h0.id[1:]) % 3]
            assert h0.metadata == its[int(h0.id[1:])].metadata
            truth = brute(vecs, q, keep, k, metric)
            overlap.append(len({h.id for h in hits} & set(truth)) / k)
        floor = 1.0 if kind == "flat" else 0.5
        assert np.mean(overlap) >= floor


def test_filter_smaller_than_k_returns_all_matches(tmp_path: Path, data) -> None:
    vecs, its = data
    with IndexManager(tmp_path) as mgr:
        mgr.create_collection("c", DIM, kind="hnsw")
        coll = mgr.collection("c")
        coll.upsert(its[:300])
        hits = coll.query(vecs[0], 50, {"metadata": {"bucket": {"in": [3, 4]}}})
        assert sorted(h.id for h in hits) == ["v103", "v104", "v203", "v204", "v3", "v4"]
        assert coll.query(vecs[0], 5, {"metadata": {"bucket": 1000}}) == []


def test_query_by_id_excludes_the_item_and_applies_filter(tmp_path: Path, data) -> None:
    vecs, its = data
    with IndexManager(tmp_path) as mgr:
        mgr.create_collection("c", DIM, kind="hnsw")
        coll = mgr.collection("c")
        coll.upsert(its[:600])
        hits = coll.query_by_id("v10", 5)
        assert len(hits) == 5 and "v10" not in [h.id for h in hits]
        assert [h.id for h in hits] == brute(vecs[:600], vecs[10], np.arange(600) != 10, 5, "ip")
        hits = coll.query_by_id("v10", 5, {"modality": "image"})
        assert all(h.modality is Modality.IMAGE for h in hits) and len(hits) == 5


def test_delete_where(tmp_path: Path, data) -> None:
    vecs, its = data
    with IndexManager(tmp_path) as mgr:
        mgr.create_collection("c", DIM, kind="flat")
        coll = mgr.collection("c")
        coll.upsert(its[:300])
        gone = coll.delete_where({"modality": "text", "metadata": {"bucket": {"gte": 50}}})
        assert sorted(gone) == sorted(f"v{i}" for i in range(300) if i % 3 == 0 and i % 100 >= 50)
        assert coll.describe().count == 300 - len(gone)
        assert coll.query(vecs[0], 300, {"ids": gone}) == []
        assert coll.delete_where({"ids": gone}) == []
