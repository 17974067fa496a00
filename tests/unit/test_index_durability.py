"""Durability of index collections: reopen, snapshot + replay, bad snapshots, tombstones."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
from synesthesia.errors import FailedPrecondition, NotFound
from synesthesia.index import IndexManager, Tuning, UpsertItem

faiss.omp_set_num_threads(1)

DIM = 16
KINDS = [
    ("flat", {}),
    ("hnsw", {"M": 16, "ef_construction": 40, "ef_search": 64}),
    ("ivf-pq", {"nlist": 8, "m": 4, "nbits": 4, "nprobe": 8, "train_min": 300}),
]


def items(rng: np.random.Generator, ids: range, tag: str = "a") -> list[UpsertItem]:
    vecs = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    return [
        UpsertItem(
            f"id-{i}",
            vecs[j],
            "image" if i % 3 else "audio",
            {"n": i, "tag": tag, "half": i / 2, "odd": bool(i % 2), "txt": "ünï"},
        )
        for j, i in enumerate(ids)
    ]


def snapshot_of(mgr: IndexManager, name: str) -> dict[str, tuple[bytes, str, dict]]:
    coll = mgr.collection(name)
    ids = [f"id-{i}" for i in range(2000)]
    return {it.id: (it.vector.tobytes(), it.modality.value, it.metadata) for it in coll.get(ids)}


@pytest.mark.parametrize(("kind", "params"), KINDS)
def test_reopen_gives_identical_items_and_queries(tmp_path: Path, kind: str, params: dict) -> None:
    rng = np.random.default_rng(1)
    with IndexManager(tmp_path) as mgr:
        mgr.create_collection("c", DIM, kind=kind, params=params, model_id="m")
        coll = mgr.collection("c")
        written = items(rng, range(500))
        coll.upsert(written)
        coll.upsert(items(rng, range(0, 500, 7), tag="b"))  # replacements
        coll.delete([f"id-{i}" for i in range(1, 500, 5)])
        before = snapshot_of(mgr, "c")
        q = rng.standard_normal(DIM).astype(np.float32)
        hits_before = coll.query(q, 10)
    # first reopen replays everything (close() wrote a snapshot; remove it to test pure replay)
    (tmp_path / "snapshots" / "c.snap").unlink()
    with IndexManager(tmp_path) as mgr:
        after = snapshot_of(mgr, "c")
        hits_after = mgr.collection("c").query(q, 10)
        info = mgr.describe("c")
    assert after == before
    assert len(after) == 500 - 100
    assert after["id-7"][2]["tag"] == "b" and after["id-2"][2]["tag"] == "a"
    assert "id-1" not in after
    if kind != "ivf-pq":  # a rebuilt ivf-pq index is retrained, so its approximation differs
        assert [h.id for h in hits_after] == [h.id for h in hits_before]
    assert {h.id for h in hits_after} <= set(after)
    assert info.count == 400 and info.tombstones == 100
    assert info.spec.params == mgr.list_collections()[0].params
    assert info.bytes_on_disk > 400 * DIM * 4


@pytest.mark.parametrize(("kind", "params"), KINDS)
def test_snapshot_then_more_writes_are_replayed(tmp_path: Path, kind: str, params: dict) -> None:
    rng = np.random.default_rng(2)
    mgr = IndexManager(tmp_path)
    mgr.create_collection("c", DIM, kind=kind, params=params)
    coll = mgr.collection("c")
    coll.upsert(items(rng, range(400)))
    seq = coll.snapshot()
    coll.upsert(items(rng, range(350, 450), tag="late"))  # 50 replaced, 50 new
    coll.delete(["id-0", "id-360", "id-449"])
    expected = snapshot_of(mgr, "c")
    q = rng.standard_normal(DIM).astype(np.float32)
    hits = coll.query(q, 20)
    mgr.close(snapshot=False)  # as if killed: snapshot covers only the first batch

    with IndexManager(tmp_path) as mgr2:
        coll2 = mgr2.collection("c")
        info = coll2.describe()
        assert info.snapshot_seq == seq < info.last_seq
        assert snapshot_of(mgr2, "c") == expected
        live = set(expected)
        got = coll2.query(q, 20)
        assert {h.id for h in got} <= live
        assert [h.id for h in got] == [h.id for h in hits]
        assert info.index_ntotal - info.dead_in_index == len(live) == 447


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # torn
        lambda b: b[:-100] + bytes(100),  # zeroed tail
        lambda b: b"garbage" * 10,  # not a snapshot
        lambda b: b[:8] + b"\xff\xff\xff\x7f" + b[12:],  # absurd header length
    ],
)
def test_corrupt_snapshot_is_rebuilt_from_sqlite(tmp_path: Path, damage) -> None:
    rng = np.random.default_rng(3)
    with IndexManager(tmp_path) as mgr:
        mgr.create_collection("c", DIM, kind="hnsw", params=KINDS[1][1])
        mgr.collection("c").upsert(items(rng, range(300)))
        q = rng.standard_normal(DIM).astype(np.float32)
        ids = [h.id for h in mgr.collection("c").query(q, 5)]
    snap = tmp_path / "snapshots" / "c.snap"
    snap.write_bytes(damage(snap.read_bytes()))
    with IndexManager(tmp_path) as mgr:
        coll = mgr.collection("c")
        assert coll.describe().index_ntotal == 300
        assert [h.id for h in coll.query(q, 5)] == ids


def test_snapshot_of_a_dropped_and_recreated_collection_is_ignored(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    mgr = IndexManager(tmp_path)
    mgr.create_collection("c", DIM)
    mgr.collection("c").upsert(items(rng, range(50)))
    mgr.collection("c").snapshot()
    stale = (tmp_path / "snapshots" / "c.snap").read_bytes()
    mgr.drop_collection("c")
    with pytest.raises(NotFound):
        mgr.collection("c")
    mgr.create_collection("c", DIM)
    mgr.collection("c").upsert(items(rng, range(5)))
    mgr.close(snapshot=False)
    (tmp_path / "snapshots" / "c.snap").write_bytes(stale)  # e.g. unlink lost in a crash
    with IndexManager(tmp_path) as mgr:
        assert mgr.describe("c").index_ntotal == 5
        assert mgr.describe("c").count == 5


def test_hnsw_tombstones_are_filtered_then_compacted(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    tuning = Tuning(compact_fraction=0.3, compact_min_dead=50)
    with IndexManager(tmp_path, tuning=tuning) as mgr:
        mgr.create_collection("c", DIM, kind="hnsw", params=KINDS[1][1])
        coll = mgr.collection("c")
        written = items(rng, range(400))
        coll.upsert(written)
        gone = [f"id-{i}" for i in range(0, 100)]
        assert sorted(coll.delete([*gone, "never-existed"])) == sorted(gone)
        info = coll.describe()
        assert info.dead_in_index == 100 and info.index_ntotal == 400  # not yet compacted
        for it in written[:100]:  # a deleted item's own vector must not find it
            assert all(h.id not in gone for h in coll.query(it.vector, 10))
        coll.delete([f"id-{i}" for i in range(100, 200)])  # 200/400 dead > 30 %: compaction
        info = coll.describe()
        assert info.dead_in_index == 0 and info.index_ntotal == 200
        assert info.tombstones == 0  # purged with the compaction
        hits = coll.query(written[300].vector, 3)
        assert hits[0].id == "id-300"


@pytest.mark.parametrize(("kind", "params"), KINDS)
def test_hits_stay_consistent_after_removals(tmp_path: Path, kind: str, params: dict) -> None:
    """Regression: IndexIDMap2 around IVF shifted labels after remove_ids."""
    rng = np.random.default_rng(6)
    with IndexManager(tmp_path) as mgr:
        mgr.create_collection("c", DIM, kind=kind, params=params)
        coll = mgr.collection("c")
        written = items(rng, range(600))
        coll.upsert(written)
        assert coll.describe().trained
        coll.delete([f"id-{i}" for i in range(0, 600, 4)])
        for it in written[1:200:4]:
            hits = coll.query(it.vector, 5)
            assert it.id in [h.id for h in hits]
            for h in hits:
                assert h.metadata["n"] == int(h.id.removeprefix("id-"))
                assert int(h.id.removeprefix("id-")) % 4 != 0


def test_ivf_pq_is_exact_until_trained(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    with IndexManager(tmp_path) as mgr:
        mgr.create_collection("c", DIM, kind="ivf-pq", params=KINDS[2][1])
        coll = mgr.collection("c")
        coll.upsert(items(rng, range(299)))
        assert not coll.describe().trained
        q = rng.standard_normal(DIM).astype(np.float32)
        vecs = {it.id: it.vector for it in coll.get([f"id-{i}" for i in range(299)])}
        exact = sorted(vecs, key=lambda i: -float(vecs[i] @ q))[:10]
        assert [h.id for h in coll.query(q, 10)] == exact
        coll.upsert(items(rng, range(299, 300)))
        assert coll.describe().trained


def test_data_directory_is_locked_against_a_second_manager(tmp_path: Path) -> None:
    with IndexManager(tmp_path), pytest.raises(FailedPrecondition):
        IndexManager(tmp_path)
