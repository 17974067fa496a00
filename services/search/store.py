"""The standalone service's Store: one IndexManager (SQLite + FAISS) on local disk, its blocking
calls run in a small thread pool so the event loop stays free."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from synesthesia.index import IndexManager
from synesthesia.index.types import CollectionInfo, CollectionSpec, Hit, StoredItem, UpsertItem

T = TypeVar("T")


class LocalStore:
    def __init__(self, manager: IndexManager, threads: int = 4) -> None:
        self.manager = manager
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="index")

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
        coll = self.manager.collection(collection)
        return await self._run(coll.query, vector, k, flt, recall)

    async def query_by_id(
        self, collection: str, item_id: str, k: int, flt: dict[str, Any], recall: float | None
    ) -> list[Hit]:
        coll = self.manager.collection(collection)
        return await self._run(coll.query_by_id, item_id, k, flt, recall)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
