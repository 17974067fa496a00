"""One shard of the search service on Ray: the standalone service's LocalStore (its own
IndexManager, SQLite + FAISS) in its own data directory, plus a periodic snapshot. Items live on
the shard ``shard_of(id)``; the router (search_router.py) runs the one search flow over all
shards."""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any

import numpy as np
from ray import serve
from synesthesia.index import IndexManager
from synesthesia.index.types import CollectionInfo, CollectionSpec, Hit, StoredItem, UpsertItem
from synesthesia.services.ray.args import SearchOptions
from synesthesia.services.search.store import LocalStore

log = logging.getLogger(__name__)


def shard_of(item_id: str, shards: int) -> int:
    """Stable across processes and restarts (unlike ``hash()``): blake2b of the UTF-8 id."""
    digest = hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


@serve.deployment
class SearchShard:
    def __init__(self, index: int, options: dict[str, Any]) -> None:
        opts = SearchOptions.model_validate(options)
        self.index = index
        self.data_dir = opts.data_dir / f"shard-{index}"
        self.manager = IndexManager(self.data_dir, synchronous=opts.sqlite_synchronous)
        self.store = LocalStore(self.manager)
        self._stop = threading.Event()
        self._snapshots = threading.Thread(
            target=self._snapshot_loop, args=(opts.snapshot_interval_s,), daemon=True
        )
        self._snapshots.start()
        log.info("search shard %d open on %s", index, self.data_dir)

    def _snapshot_loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.manager.snapshot_all()
            except Exception:
                log.exception("periodic snapshot of shard %d failed", self.index)

    def __del__(self) -> None:
        self._stop.set()
        try:
            self.manager.close()
        except Exception:
            log.exception("closing shard %d failed", self.index)

    # The Store interface (services/search/flow.py), called by the router through handles.
    async def create(self, spec: CollectionSpec) -> CollectionSpec:
        return await self.store.create(spec)

    async def specs(self) -> list[CollectionSpec]:
        return await self.store.specs()

    async def spec(self, collection: str) -> CollectionSpec:
        return await self.store.spec(collection)

    async def describe(self, collection: str) -> CollectionInfo:
        return await self.store.describe(collection)

    async def drop(self, collection: str) -> None:
        await self.store.drop(collection)

    async def snapshot(self, collection: str) -> dict[str, int]:
        return await self.store.snapshot(collection)

    async def write(self, collection: str, items: list[UpsertItem]) -> int:
        return await self.store.write(collection, items)

    async def delete(self, collection: str, ids: list[str]) -> list[str]:
        return await self.store.delete(collection, ids)

    async def delete_where(self, collection: str, flt: dict[str, Any]) -> list[str]:
        return await self.store.delete_where(collection, flt)

    async def get(self, collection: str, ids: list[str]) -> list[StoredItem]:
        return await self.store.get(collection, ids)

    async def query(
        self, collection: str, vector: np.ndarray, k: int, flt: dict[str, Any], recall: float | None
    ) -> list[Hit]:
        return await self.store.query(collection, vector, k, flt, recall)

    async def query_batch(
        self,
        collection: str,
        vectors: np.ndarray,
        k: int,
        flt: dict[str, Any],
        recall: float | None,
    ) -> list[list[Hit]]:
        return await self.store.query_batch(collection, vectors, k, flt, recall)

    async def vector_of(self, collection: str, item_id: str) -> np.ndarray:
        """The stored vector of ``item_id``; NotFound when this shard does not hold it."""
        from synesthesia.errors import NotFound

        items = await self.store.get(collection, [item_id])
        if not items:
            raise NotFound(f"item {item_id!r} is not in collection {collection!r}")
        return items[0].vector
