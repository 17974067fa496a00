"""One shard of the search service: its own IndexManager (SQLite + FAISS) in its own data
directory, driven by the same SearchCore as the standalone service. Items live on the shard
``shard_of(id)``; the router (search_router.py) scatters and gathers."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from typing import Any

import numpy as np
from ray import serve
from synesthesia.index import IndexManager, UpsertItem
from synesthesia.index.validate import check_items
from synesthesia.services.ray.args import SearchOptions
from synesthesia.services.search.core import ParsedUpsert, SearchCore
from synesthesia.v1 import search_pb2

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
        self.core = SearchCore(self.manager, opts.max_items_per_request)
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

    # -- collections (the router broadcasts these) ---------------------------------------------
    async def create(
        self, config: search_pb2.CollectionConfig
    ) -> search_pb2.CreateCollectionResponse:
        return await asyncio.to_thread(self.core.create, config)

    async def list_collections(self) -> search_pb2.ListCollectionsResponse:
        return await asyncio.to_thread(self.core.list)

    async def describe(self, name: str) -> search_pb2.DescribeCollectionResponse:
        return await asyncio.to_thread(self.core.describe, name)

    async def drop(self, name: str) -> search_pb2.DropCollectionResponse:
        return await asyncio.to_thread(self.core.drop, name)

    async def snapshot(self, name: str) -> search_pb2.SnapshotResponse:
        return await asyncio.to_thread(self.core.snapshot, name)

    # -- items ---------------------------------------------------------------------------------
    async def parse_upsert(self, request: search_pb2.UpsertRequest) -> ParsedUpsert:
        return await asyncio.to_thread(self.core.parse_upsert, request)

    async def check(self, collection: str, items: list[UpsertItem]) -> None:
        """Validates a whole batch against the collection (ids, dims, model id, metadata) with
        the caller's item numbering, before any shard writes."""
        spec = await asyncio.to_thread(lambda: self.manager.collection(collection).spec)
        check_items(spec, items)

    async def write(self, collection: str, items: list[UpsertItem]) -> int:
        result = await asyncio.to_thread(lambda: self.manager.collection(collection).upsert(items))
        return int(result.last_seq)

    async def delete(self, request: search_pb2.DeleteRequest) -> search_pb2.DeleteResponse:
        return await asyncio.to_thread(self.core.delete, request)

    async def get(self, request: search_pb2.GetRequest) -> search_pb2.GetResponse:
        return await asyncio.to_thread(self.core.get, request)

    async def vector_of(self, collection: str, item_id: str) -> np.ndarray:
        """The stored vector of ``item_id``; NotFound when this shard does not hold it."""
        from synesthesia.errors import NotFound

        items = await asyncio.to_thread(lambda: self.manager.collection(collection).get([item_id]))
        if not items:
            raise NotFound(f"item {item_id!r} is not in collection {collection!r}")
        return items[0].vector

    async def check_query(self, request: search_pb2.QueryRequest) -> None:
        """NotFound for an unknown collection, InvalidInput for a bad filter: before embedding."""
        await asyncio.to_thread(self.manager.collection, request.collection)
        self.core.query_filter(request)

    async def query(
        self, request: search_pb2.QueryRequest, vector: np.ndarray, model_id: str | None
    ) -> list[search_pb2.QueryHit]:
        reply = await asyncio.to_thread(self.core.query_vector, request, vector, model_id)
        return list(reply.hits)


def to_upsert_items(
    parsed: ParsedUpsert, vectors: dict[int, tuple[np.ndarray, str]]
) -> list[UpsertItem]:
    """The index library's items for a parsed request, media replaced by their vectors (the
    conversion SearchCore.commit_upsert does, without writing)."""
    from synesthesia.modality import Modality
    from synesthesia.protoconv import modality_from_proto

    out: list[UpsertItem] = []
    for i, it in enumerate(parsed.items):
        meta = SearchCore._metadata(i, it)
        if i in vectors:
            vec, model_id = vectors[i]
            text = it.WhichOneof("content") == "text"
            modality = Modality.TEXT if text else modality_from_proto(it.modality)
            out.append(UpsertItem(it.id, vec, modality, meta, model_id))
        else:
            values = np.asarray(it.vector.values, dtype=np.float32)
            out.append(
                UpsertItem(
                    it.id,
                    values,
                    modality_from_proto(it.modality),
                    meta,
                    it.vector.model_id or None,
                )
            )
    return out
