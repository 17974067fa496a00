"""LocalStore's SearchBatcher: concurrent searches merged into few FAISS calls, each caller
answered as by its own Collection.query_batch, a failure kept to the search it is about."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from synesthesia.errors import InvalidInput, NotFound
from synesthesia.index import IndexManager, UpsertItem
from synesthesia.services.search.store import PART_ROWS, SearchBatcher

DIM = 16


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[IndexManager]:
    with IndexManager(tmp_path, synchronous="NORMAL") as mgr:
        mgr.create_collection("c", DIM, kind="hnsw")
        rng = np.random.default_rng(1)
        vecs = rng.standard_normal((500, DIM)).astype(np.float32)
        mgr.collection("c").upsert(
            [UpsertItem(f"v{i}", vecs[i], "image", {"even": i % 2 == 0}) for i in range(500)]
        )
        yield mgr


def queries(n: int, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def counted(manager: IndexManager, gate: threading.Event | None = None) -> list[int]:
    """The rows of every Collection.query_batch call of collection c, from now on; the first
    call waits for ``gate``, when given."""
    coll = manager.collection("c")
    calls: list[int] = []
    inner = coll.query_batch

    def query_batch(vectors, k, flt=None, recall=None):  # type: ignore[no-untyped-def]
        calls.append(len(vectors))
        if gate is not None and len(calls) == 1:
            assert gate.wait(30)
        return inner(vectors, k, flt, recall)

    coll.query_batch = query_batch  # type: ignore[method-assign]
    return calls


def test_concurrent_searches_are_merged_and_answered_each_its_own(
    manager: IndexManager,
) -> None:
    q = queries(40)
    calls = counted(manager)
    even = {"metadata": {"even": True}}
    batcher = SearchBatcher(manager, lanes=2)

    async def go() -> list[list[list[object]]]:
        singles = [
            batcher.search("c", q[i : i + 1], 5, even if i % 4 == 0 else {}) for i in range(40)
        ]
        return await asyncio.gather(*singles)

    try:
        got = asyncio.run(go())
    finally:
        batcher.close()
    coll = manager.collection("c")
    for i, hits in enumerate(got):
        assert hits == [coll.query(q[i], 5, even if i % 4 == 0 else {})]
    assert sum(calls) == 40 and len(calls) < 40  # merged: fewer calls than searches


def test_a_large_search_is_cut_into_parts_the_lanes_share(manager: IndexManager) -> None:
    q = queries(3 * PART_ROWS + 5)
    calls = counted(manager)
    batcher = SearchBatcher(manager, lanes=2)
    try:
        got = asyncio.run(batcher.search("c", q, 7, {}))
    finally:
        batcher.close()
    assert sum(calls) == len(q) and len(calls) >= 2  # shared out: at most about half a call
    assert max(calls) <= len(q) // 2 + PART_ROWS
    assert got == manager.collection("c").query_batch(q, 7)


def test_a_failing_search_fails_alone(manager: IndexManager) -> None:
    batcher = SearchBatcher(manager, lanes=1)
    good = queries(3)

    async def go() -> list[object]:
        searches = [
            batcher.search("c", good[:1], 3, {}),
            batcher.search("c", good[1:2], 3, {}),
            batcher.search("c", np.full((1, DIM), np.nan, np.float32), 3, {}),
            batcher.search("c", good[2:3], 3, {}),
            batcher.search("nope", good[:1], 3, {}),
        ]
        return await asyncio.gather(*searches, return_exceptions=True)

    try:
        got = asyncio.run(go())
    finally:
        batcher.close()
    coll = manager.collection("c")
    assert got[0] == [coll.query(good[0], 3)] and got[1] == [coll.query(good[1], 3)]
    assert got[3] == [coll.query(good[2], 3)]
    assert isinstance(got[2], InvalidInput) and "NaN" in str(got[2])
    assert isinstance(got[4], NotFound)


def test_a_caller_that_has_gone_costs_no_search(manager: IndexManager) -> None:
    gate = threading.Event()
    calls = counted(manager, gate)
    batcher = SearchBatcher(manager, lanes=1)
    q = queries(3)

    async def go() -> list[object]:
        first = asyncio.ensure_future(batcher.search("c", q[:1], 3, {}))
        await asyncio.sleep(0)  # the first holds the lane; the next two wait for it
        gone = asyncio.ensure_future(batcher.search("c", q[1:2], 3, {}))
        kept = asyncio.ensure_future(batcher.search("c", q[2:3], 3, {}))
        await asyncio.sleep(0)
        gone.cancel()
        gate.set()
        return await asyncio.gather(first, kept)

    try:
        got = asyncio.run(go())
    finally:
        batcher.close()
    assert len(got) == 2 and calls == [1, 1]
