"""The standalone service's Store: one IndexManager (SQLite + FAISS) on local disk, its blocking
calls run in a small thread pool so the event loop stays free.

Vector searches take a path of their own, ``SearchBatcher``: concurrent searches of a collection
with the same k, filter and recall target are merged into one ``Collection.query_batch`` call,
so that under load one thread hop and one FAISS call serve many queries, on "search lanes"
(one thread per core, one FAISS thread each). A search that finds a lane free starts at once:
merging never makes a query wait."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import faiss
import numpy as np
from synesthesia.index import Collection, IndexManager
from synesthesia.index.types import CollectionInfo, CollectionSpec, Hit, StoredItem, UpsertItem
from synesthesia.services.search.flow import filter_key

T = TypeVar("T")

#: FAISS calls running at once, each on one thread of its own ("lanes"). Several single-threaded
#: calls keep every core busy without FAISS's parallel regions, whose threads spin waiting for
#: one another whenever the event loop (or anything else) takes their core.
SEARCH_LANES = faiss.omp_get_max_threads()
#: About the most vectors merged into one call (whole searches, or parts of PART_ROWS).
MAX_MERGED_ROWS = 1024
#: A search of more vectors is cut into parts of this many, which free lanes share.
PART_ROWS = 16
#: A lane beyond the first starts only for this many waiting vectors: one or two run better
#: merged into the busy lane's next call (every call is a thread hop, and its thread contends
#: for the GIL); from a few on, a second lane shortens their wait (measured at 8 clients).
JOIN_ROWS = 4


@dataclass
class _Search:
    vectors: np.ndarray  # (n, dim), validated
    flt: dict[str, Any]
    recall: float | None  # the query's own recall target (None: the collection's effort)
    future: asyncio.Future[list[list[Hit]]] = field(repr=False)


_Answer = tuple[list[list[Hit]] | None, Exception | None]


def _in_lane(coll: Collection, taken: list[_Search], k: int) -> list[_Answer]:
    """In a lane: ``taken`` as one Collection.query_batch call; if that fails, each search
    alone, so that each gets its own answer (its own error)."""
    if len(taken) > 1:
        try:
            first = taken[0]
            vectors = np.concatenate([s.vectors for s in taken])
            merged = coll.query_batch(vectors, k, first.flt, first.recall)
        except Exception:
            pass
        else:
            answers: list[_Answer] = []
            start = 0
            for search in taken:
                answers.append((merged[start : start + len(search.vectors)], None))
                start += len(search.vectors)
            return answers
    alone: list[_Answer] = []
    for search in taken:
        try:
            alone.append((coll.query_batch(search.vectors, k, search.flt, search.recall), None))
        except Exception as exc:
            alone.append((None, exc))
    return alone


def _answer(search: _Search, result: list[list[Hit]] | None, error: Exception | None) -> None:
    if search.future.done():  # its caller has gone
        return
    if error is not None:
        search.future.set_exception(error)
    else:
        search.future.set_result(result)  # type: ignore[arg-type]


class SearchBatcher:
    """Runs vector searches in ``lanes`` threads. A search starts at once when every lane is
    free; otherwise it waits, and the next lane to free up takes the waiting searches of the
    first waiting (collection, k, filter, recall target) as one call: all of them when they are
    few, else a lane's share (about ``max_rows`` vectors at most). A free lane joins in only for
    ``JOIN_ROWS`` waiting vectors or more. A merged call that fails is rerun search by search,
    so that each caller gets its own answer."""

    def __init__(
        self, manager: IndexManager, lanes: int = SEARCH_LANES, max_rows: int = MAX_MERGED_ROWS
    ) -> None:
        self.manager = manager
        self.lanes = max(1, lanes)
        self.max_rows = max_rows
        # one single-threaded executor a lane, so that a lane is one thread: calls of a few
        # queries go to the first free lane, and with one lane busy that is always the same
        self._lanes = [
            ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix=f"search-{i}",
                initializer=faiss.omp_set_num_threads,  # the calling thread's own setting
                initargs=(1,),
            )
            for i in range(self.lanes)
        ]
        self._free = list(reversed(range(self.lanes)))  # pop() gives the lowest free lane
        self._waiting: dict[tuple[str, int, str, float | None], list[_Search]] = {}

    async def search(
        self,
        collection: str,
        vectors: np.ndarray,
        k: int,
        flt: dict[str, Any],
        recall: float | None = None,
    ) -> list[list[Hit]]:
        """The hits of every row of ``vectors`` (validated, n x dim)."""
        loop = asyncio.get_running_loop()
        if len(vectors) <= PART_ROWS:
            parts = [vectors]
        else:
            parts = [vectors[s : s + PART_ROWS] for s in range(0, len(vectors), PART_ROWS)]
        searches = [_Search(part, flt, recall, loop.create_future()) for part in parts]
        key = (collection, k, filter_key(flt), recall)
        self._waiting.setdefault(key, []).extend(searches)
        self._start()
        if len(searches) == 1:
            return await searches[0].future
        results = await asyncio.gather(*(s.future for s in searches))
        return [hits for part in results for hits in part]

    def _start(self) -> None:
        while self._free and self._waiting:
            key = next(iter(self._waiting))
            queue = self._waiting[key]
            waiting = sum(len(s.vectors) for s in queue)
            if len(self._free) < self.lanes and waiting < JOIN_ROWS:
                return  # a few queries: merged into the busy lane's next call, not spread out
            # a few: all in one call; more: a lane's share, the rest left for the lanes that
            # free up next (taking it all would leave them idle while this one works alone)
            share = (
                waiting if waiting < PART_ROWS else min(self.max_rows, -(-waiting // self.lanes))
            )
            taken: list[_Search] = []
            rows = 0
            while queue and rows < share:
                search = queue.pop(0)
                if not search.future.done():  # else its caller has gone
                    taken.append(search)
                    rows += len(search.vectors)
            if not queue:
                del self._waiting[key]
            if taken:
                self._launch(key[0], key[1], taken)

    def _launch(self, collection: str, k: int, taken: list[_Search]) -> None:
        """``taken`` as one call in the lowest free lane; ``_landed`` answers them on the event
        loop (no asyncio future or task in between)."""
        try:
            coll = self.manager.collection(collection)  # NotFound
        except Exception as exc:
            for search in taken:
                _answer(search, None, exc)
            return
        loop = asyncio.get_running_loop()
        lane = self._free.pop()
        call = self._lanes[lane].submit(_in_lane, coll, taken, k)
        call.add_done_callback(
            lambda done: loop.call_soon_threadsafe(self._landed, lane, taken, done)
        )

    def _landed(self, lane: int, taken: list[_Search], done: Future[list[_Answer]]) -> None:
        self._free.append(lane)
        self._free.sort(reverse=True)
        try:
            answers = done.result()
        except Exception as exc:  # not a search's error: a failure of the lane itself
            answers = [(None, exc)] * len(taken)
        for search, (result, error) in zip(taken, answers, strict=True):
            _answer(search, result, error)
        self._start()

    def close(self) -> None:
        for lane in self._lanes:
            lane.shutdown(wait=True)


class LocalStore:
    def __init__(self, manager: IndexManager, threads: int = 4) -> None:
        self.manager = manager
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="index")
        self._searches = SearchBatcher(manager)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def create(self, spec: CollectionSpec) -> CollectionSpec:
        return await self._run(
            self.manager.create_collection,
            spec.name,
            spec.dim,
            spec.metric,
            spec.kind,
            dict(spec.params),
            spec.model_id,
        )

    async def specs(self) -> list[CollectionSpec]:
        return await self._run(self.manager.list_collections)

    async def spec(self, collection: str) -> CollectionSpec:
        return self.manager.collection(collection).spec  # a dict lookup: no thread hop

    async def describe(self, collection: str) -> CollectionInfo:
        return await self._run(self.manager.describe, collection)

    async def drop(self, collection: str) -> None:
        await self._run(self.manager.drop_collection, collection)

    async def snapshot(self, collection: str) -> dict[str, int]:
        if collection:
            return {collection: await self._run(self.manager.collection(collection).snapshot)}
        return await self._run(lambda: self.manager.snapshot_all(only_dirty=False))

    async def write(self, collection: str, items: list[UpsertItem]) -> int:
        result = await self._run(self.manager.collection(collection).upsert, items)
        return int(result.last_seq)

    async def delete(self, collection: str, ids: list[str]) -> list[str]:
        return await self._run(self.manager.collection(collection).delete, ids)

    async def delete_where(self, collection: str, flt: dict[str, Any]) -> list[str]:
        return await self._run(self.manager.collection(collection).delete_where, flt)

    async def get(self, collection: str, ids: list[str]) -> list[StoredItem]:
        return await self._run(self.manager.collection(collection).get, ids)

    async def query(
        self, collection: str, vector: np.ndarray, k: int, flt: dict[str, Any], recall: float | None
    ) -> list[Hit]:
        vectors = np.asarray(vector)[None]
        return (await self._searches.search(collection, vectors, k, flt, recall))[0]

    async def query_batch(
        self,
        collection: str,
        vectors: np.ndarray,
        k: int,
        flt: dict[str, Any],
        recall: float | None,
    ) -> list[list[Hit]]:
        return await self._searches.search(collection, vectors, k, flt, recall)

    async def query_by_id(
        self, collection: str, item_id: str, k: int, flt: dict[str, Any], recall: float | None
    ) -> list[Hit]:
        coll = self.manager.collection(collection)
        return await self._run(coll.query_by_id, item_id, k, flt, recall)

    def close(self) -> None:
        self._searches.close()
        self._pool.shutdown(wait=True)
