"""Search effort calibrated by measurement (index/calibration.py, Collection.calibrate): the
holdout, the recall curve, explicit vs calibrated effort, a query's own recall target, the
growth rules, persistence in the snapshot and the background thread."""

from __future__ import annotations

import time
from pathlib import Path

import faiss
import numpy as np
import pytest
from synesthesia.errors import InvalidInput
from synesthesia.index import Collection, IndexManager, Tuning, UpsertItem
from synesthesia.index import calibration as cal
from synesthesia.index.faiss_index import VectorIndex
from synesthesia.index.types import CollectionSpec

faiss.omp_set_num_threads(1)

DIM = 24
N = 3000
# Holdout from 500 items on, 100 queries a calibration; calibration only when asked.
TUNING = Tuning(calibration_min_items=500, calibration_queries=100, calibrate_in_background=False)


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    return unit(rng.standard_normal((N, DIM))), unit(rng.standard_normal((200, DIM)))


WEAK = {"M": 8, "ef_construction": 16}  # a graph that needs more than the smallest effort


def fill(mgr: IndexManager, x: np.ndarray, **create: object) -> Collection:
    mgr.create_collection("c", DIM, **create)  # type: ignore[arg-type]
    coll = mgr.collection("c")
    for s in range(0, len(x), 400):
        coll.upsert(
            [UpsertItem(str(i), x[i], "image", {"n": i}) for i in range(s, min(len(x), s + 400))]
        )
    return coll


def recall(mgr: IndexManager, x: np.ndarray, q: np.ndarray, **query: object) -> float:
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    coll = mgr.collection("c")
    got = [[int(h.id) for h in coll.query(v, 10, **query)] for v in q]  # type: ignore[arg-type]
    return float(np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth, strict=True)]))


# -- pure helpers ----------------------------------------------------------------------------


def test_effort_ladder_rises_by_root_two_and_ends_at_the_cap() -> None:
    assert list(cal.efforts(10, 64)) == [10, 14, 20, 28, 40, 57, 64]
    assert list(cal.efforts(1, 6)) == [1, 2, 3, 4, 6]
    assert list(cal.efforts(5, 5)) == [5]


def test_effort_for_wants_the_target_with_confidence_and_falls_back_to_the_best() -> None:
    c = cal.Calibration(
        1000,
        (cal.Point(10, 0.90, 0.01), cal.Point(20, 0.955, 0.01), cal.Point(40, 0.98, 0.005)),
        100,
        0.1,
    )
    assert c.effort_for(0.95) == 40  # 0.955 - 1.645 * 0.01 < 0.95
    assert c.effort_for(0.85) == 10
    assert c.effort_for(0.999) == 40  # out of reach: the best measured
    assert c.recall_at(30) == 0.955 and c.recall_at(5) == 0.0
    assert cal.Calibration.from_json(c.to_json()) == c
    assert cal.Calibration.from_json({"curve": []}) is None
    assert cal.Calibration.from_json("nonsense") is None


@pytest.mark.parametrize("l2", [False, True])
def test_exact_top_k_matches_brute_force_and_skips(l2: bool) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1000, 8)).astype(np.float32)
    q = rng.standard_normal((5, 8)).astype(np.float32)
    labels = np.arange(1000, 2000, dtype=np.int64)
    skip = labels[::7]
    chunks = [(labels[s : s + 128], x[s : s + 128]) for s in range(0, 1000, 128)]
    got, top = cal.exact_top_k(chunks, q, skip, 10, l2)
    scores = -((q[:, None, :] - x[None]) ** 2).sum(-1) if l2 else q @ x.T
    scores[:, ::7] = -np.inf
    want = labels[np.argsort(-scores, axis=1)[:, :10]]
    assert top == 1999
    assert all(set(g) == set(w) for g, w in zip(got, want, strict=True))
    few, _ = cal.exact_top_k(chunks[:1], q, skip, 200, l2)  # fewer candidates than k
    assert (few == -1).any()


# -- parameters and validation ---------------------------------------------------------------


def test_hnsw_and_ivf_pq_default_to_a_calibrated_effort() -> None:
    hnsw = CollectionSpec.create("h", DIM, kind="hnsw")
    assert hnsw.params == {"M": 32, "ef_construction": 80, "ef_search": 0, "recall_target": 950}
    assert CollectionSpec.create("i", 32, kind="ivf-pq", params={"m": 8}).params["nprobe"] == 0
    assert (
        CollectionSpec.create("h", DIM, kind="hnsw", params={"ef_search": 64}).params["ef_search"]
        == 64
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"recall_target": 0.95}, "thousandths"),
        ({"recall_target": 1001}, "outside [1, 1000]"),
        ({"ef_search": 5}, "or 0: calibrated"),
        ({"ef_search": -1}, "or 0: calibrated"),
    ],
)
def test_bad_effort_parameters_are_refused(params: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        CollectionSpec.create("h", DIM, kind="hnsw", params=params)


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), float("inf"), True, "0.9"])
def test_a_bad_query_recall_target_is_refused(tmp_path: Path, bad: object) -> None:
    with IndexManager(tmp_path, tuning=TUNING) as mgr:
        mgr.create_collection("c", DIM, kind="hnsw")
        coll = mgr.collection("c")
        coll.upsert([UpsertItem("a", np.ones(DIM, np.float32), "text")])
        with pytest.raises(InvalidInput, match="recall_target"):
            coll.query(np.ones(DIM, np.float32), 1, recall=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="recall_target"):
            coll.query_by_id("a", 1, recall=bad)  # type: ignore[arg-type]
        assert coll.query(np.ones(DIM, np.float32), 1, recall=0)[0].id == "a"  # 0: unset


# -- the holdout -----------------------------------------------------------------------------


def test_holdout_items_stay_out_of_faiss_but_are_found_like_any_item(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = data
    with IndexManager(tmp_path, tuning=TUNING) as mgr:
        coll = fill(mgr, x, kind="hnsw")
        held = set(coll._holdout)
        assert len(held) == 100
        assert not held & set(coll._index.labels().tolist())
        assert coll.describe().index_ntotal == N
        for label in sorted(held)[:20]:
            item_id = coll._rows[label][0]
            assert coll.query(x[int(item_id)], 1)[0].id == item_id
            n = int(item_id)  # and through a filter (FAISS selector path and exact path)
            assert coll.query(x[n], 1, {"metadata": {"n": {"gte": 0}}})[0].id == item_id
            assert coll.query(x[n], 1, {"metadata": {"n": n}})[0].id == item_id
        gone = coll._rows[min(held)][0]
        coll.delete([gone])
        assert gone not in {h.id for h in coll.query(x[int(gone)], 10)}
        info = coll.describe()
        assert info.index_ntotal - info.dead_in_index == info.count == N - 1


def test_holdout_merge_equals_sorting_everything_together() -> None:
    """The merge lets in only holdout items that beat the n-th hit: the same list as sorting
    the hits and every holdout item together (stable: a tie keeps the hit), ties included."""
    from synesthesia.index.collection import Collection

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 12))
        grid = rng.integers(0, 8, size=40) / 8.0  # coarse scores: many ties
        hits = sorted(
            ((int(i), float(grid[i])) for i in range(int(rng.integers(0, 20)))),
            key=lambda h: -h[1],
        )
        labels = np.arange(100, 100 + int(rng.integers(0, 15)), dtype=np.int64)
        scores = rng.integers(0, 8, size=len(labels)) / 8.0
        held = list(zip(labels.tolist(), scores.tolist(), strict=True))
        naive = sorted([*hits, *held], key=lambda h: -h[1])[:n]
        assert Collection._merge_holdout(hits, labels, scores, n) == naive, trial


def test_small_collections_keep_no_holdout(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = data
    with IndexManager(tmp_path, tuning=TUNING) as mgr:
        coll = fill(mgr, x[:499], kind="hnsw")
        assert not coll._holdout and coll.calibrate() is None
        assert coll.describe().search_effort == 128  # UNCALIBRATED_EFFORT
        flat_dir = tmp_path / "flat"
    with IndexManager(flat_dir, tuning=TUNING) as mgr:
        coll = fill(mgr, x, kind="flat")
        assert not coll._holdout and coll.calibrate() is None
        info = coll.describe()
        assert (info.search_effort, info.measured_recall) == (0, 1.0)


# -- calibration -----------------------------------------------------------------------------


def test_calibrated_effort_reaches_the_target_on_new_queries(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, q = data
    with IndexManager(tmp_path, tuning=TUNING) as mgr:
        coll = fill(mgr, x, kind="hnsw", params=WEAK)
        before = coll.describe()
        assert (before.search_effort, before.calibrated_count, before.measured_recall) == (
            128,
            0,
            0.0,
        )
        c = coll.calibrate()
        assert c is not None and c.count == N and c.queries == 100
        assert len(c.curve) >= 3, "the data should need more than the smallest effort"
        info = coll.describe()
        assert info.search_effort == c.effort_for(0.95) and info.calibrated_count == N
        assert info.measured_recall >= 0.95
        assert recall(mgr, x, q) >= 0.93  # new queries, not the calibration's
        low = coll._effort(0.5)
        assert low < info.search_effort  # a query may ask for less …
        assert recall(mgr, x, q, recall=0.5) < recall(mgr, x, q)  # … and gets less
        assert coll._effort(0.999) >= info.search_effort


def test_explicit_ef_search_is_honoured_and_measured(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    x, q = data
    with IndexManager(tmp_path, tuning=TUNING) as mgr:
        coll = fill(mgr, x, kind="hnsw", params={**WEAK, "ef_search": 12})
        c = coll.calibrate()
        assert c is not None and 12 in [p.effort for p in c.curve]
        info = coll.describe()
        assert info.search_effort == 12 and info.measured_recall == c.recall_at(12)
        seen: list[int] = []
        search = VectorIndex.search

        def spy(self, queries, k, selector, widen, effort):  # type: ignore[no-untyped-def]
            seen.append(effort)
            return search(self, queries, k, selector, widen, effort)

        monkeypatch.setattr(VectorIndex, "search", spy)
        coll.query(q[0], 10)
        coll.query(q[0], 10, recall=0.99)
        coll.query_by_id("7", 10, recall=0.99)
        assert seen[0] == 12 and seen[1] == seen[2] == c.effort_for(0.99) > 12


def test_ivf_pq_calibrates_nprobe(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, q = data
    params = {"nlist": 32, "m": 8, "nbits": 6, "train_min": 1000}
    with IndexManager(tmp_path, tuning=TUNING) as mgr:
        coll = fill(mgr, x, kind="ivf-pq", params=params)
        assert coll.describe().trained
        c = coll.calibrate()
        assert c is not None and all(1 <= p.effort <= 32 for p in c.curve)
        info = coll.describe()
        assert info.search_effort == c.effort_for(0.95)
        assert abs(recall(mgr, x, q) - info.measured_recall) < 0.1


def test_growth_and_quiet_rules(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = data
    tuning = Tuning(
        calibration_min_items=500,
        calibration_queries=100,
        calibrate_in_background=False,
        calibration_settle_s=3600,
        calibration_max_age_s=3600,
    )
    with IndexManager(tmp_path, tuning=tuning) as mgr:
        coll = fill(mgr, x[:2000], kind="hnsw")
        assert coll.calibration_due(time.monotonic())  # never calibrated
        coll.calibrate()
        assert not coll.calibration_due(time.monotonic())
        coll.upsert([UpsertItem(str(i), x[i], "image") for i in range(2000, 2200)])  # +10 %
        assert not coll.calibration_due(time.monotonic())  # writing, not yet 1.25x
        assert coll.calibration_due(time.monotonic() + 3600)  # quiet for settle_s: due
        coll.upsert([UpsertItem(str(i), x[i], "image") for i in range(2200, 2600)])  # 1.3x
        assert coll.calibration_due(time.monotonic() + 60)  # 1.3x, and not too soon after the last
        spent, now = coll._calibration.seconds, time.monotonic()  # type: ignore[union-attr]
        coll._calibrated_at = now
        assert not coll.calibration_due(now + 8 * spent)  # too soon: at most 10 % of the time
        assert coll.calibration_due(now + 9 * spent + 1)
        coll.calibrate()
        coll.compact()  # a rebuilt index is a new graph
        assert coll.calibration_due(time.monotonic())


# -- persistence and the background thread ---------------------------------------------------


def test_snapshot_keeps_the_calibration_and_the_holdout(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, q = data
    first = IndexManager(tmp_path, tuning=TUNING)
    coll = fill(first, x, kind="hnsw", params=WEAK)
    c, held, info = coll.calibrate(), dict(coll._holdout), coll.describe()
    hits = [[h.id for h in coll.query(v, 10)] for v in q[:20]]
    first.close()  # writes the snapshot
    with IndexManager(tmp_path, tuning=TUNING) as mgr:
        coll = mgr.collection("c")
        assert coll._calibration == c and not coll.calibration_due(time.monotonic())
        assert coll._holdout.keys() == held.keys()
        assert all(np.array_equal(coll._holdout[k], v) for k, v in held.items())
        after = coll.describe()
        assert (after.search_effort, after.calibrated_count) == (
            info.search_effort,
            info.calibrated_count,
        )
        assert [[h.id for h in coll.query(v, 10)] for v in q[:20]] == hits
    (tmp_path / "snapshots" / "c.snap").unlink()  # rebuilt from SQLite: a new holdout, due
    with IndexManager(tmp_path, tuning=TUNING) as mgr:
        coll = mgr.collection("c")
        assert len(coll._holdout) == 100 and coll.describe().index_ntotal == N
        assert not set(coll._holdout) & set(coll._index.labels().tolist())
        assert coll.calibration_due(time.monotonic())


def test_the_manager_calibrates_in_the_background(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = data
    tuning = Tuning(
        calibration_min_items=500,
        calibration_queries=100,
        calibration_poll_s=0.05,
        calibration_settle_s=0.2,
    )
    with IndexManager(tmp_path, tuning=tuning) as mgr:
        fill(mgr, x, kind="hnsw")
        deadline = time.monotonic() + 60
        while mgr.describe("c").calibrated_count != N and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mgr.describe("c").calibrated_count == N
        mgr.drop_collection("c")  # the thread copes with a collection that is gone


def test_a_batch_merges_the_holdout_row_by_row(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    """query_batch decides for all rows at once which ones a holdout item enters. Its hits are
    FAISS's hits and every holdout item scored exactly, sorted together (a tie keeps the FAISS
    hit): checked for rows a holdout item tops, rows where one comes second or lower (a query
    between an indexed item and a holdout item), and rows it enters nowhere, at k 1/5/60."""
    from synesthesia.index.filters import parse_filter

    x, q = data
    with IndexManager(tmp_path, tuning=TUNING) as mgr:
        coll = fill(mgr, x, kind="hnsw")
        held = sorted(coll._holdout)[:8]
        indexed = sorted(set(coll._rows) - set(coll._holdout))[:8]
        own = [x[int(coll._rows[lb][0])] for lb in held]
        between = [  # the indexed item first, the holdout item near it
            0.7 * x[int(coll._rows[a][0])] + 0.3 * x[int(coll._rows[h][0])]
            for a, h in zip(indexed, held, strict=True)
        ]
        qs = unit(np.stack([*own, *between, *q[:16]]))
        labels = np.array(list(coll._holdout), dtype=np.int64)
        vecs = np.stack(list(coll._holdout.values()))
        effort = coll._effort(None)
        entered = 0
        for k in (1, 5, 60):
            faiss_only = coll._ranked_rows(qs, k, parse_filter({}), None, effort, holdout=False)
            got = coll.query_batch(qs, k)
            for i, (hits, row) in enumerate(zip(got, faiss_only, strict=True)):
                exact = vecs @ qs[i]
                scored = zip(labels.tolist(), exact.tolist(), strict=True)
                ranked = sorted([*row, *scored], key=lambda h: -h[1])
                want = [coll._rows[lb][0] for lb, _ in ranked[:k]]
                assert [h.id for h in hits] == want, (k, i)
                assert [h.score for h in hits] == pytest.approx([sc for _, sc in ranked[:k]])
                entered += sum(lb in coll._holdout for lb, _ in ranked[1:k])
        assert entered > 0  # some holdout item ranked below first: the floor is the k-th hit


def test_query_by_id_of_a_holdout_item_leaves_it_out(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    """The holdout is masked only when it must be (a filter, or the query's own item in it):
    by id, a holdout item is not its own neighbour, and the rest are its vector's neighbours."""
    x, _ = data
    with IndexManager(tmp_path, tuning=TUNING) as mgr:
        coll = fill(mgr, x, kind="hnsw")
        for label in sorted(coll._holdout)[:5]:
            item_id = coll._rows[label][0]
            by_id = coll.query_by_id(item_id, 10)
            by_vector = coll.query(x[int(item_id)], 11)
            assert by_vector[0].id == item_id and item_id not in {h.id for h in by_id}
            # (an approximate search that leaves one item out may walk the graph otherwise)
            assert len(by_id) == 10 and len({h.id for h in by_id} & {h.id for h in by_vector}) >= 8
