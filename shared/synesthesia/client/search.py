"""Clients of the search service: collections, upsert, get, delete, query and classify."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from synesthesia.client._transport import (
    _AsyncClient,
    _SyncClient,
    in_order,
    item_numbers,
    rpc_errors,
)
from synesthesia.client.encoder import _progress
from synesthesia.client.inputs import Media
from synesthesia.client.types import (
    Collection,
    CollectionInfo,
    Hit,
    Item,
    LabelScore,
    StoredItem,
    _batch_hits,
    _classify_request,
    _config,
    _hits,
    _info,
    _labels,
    _query_batch_requests,
    _query_request,
    _stored,
    _upsert_requests,
)
from synesthesia.errors import NotFound
from synesthesia.modality import Modality
from synesthesia.protoconv import dict_to_struct
from synesthesia.v1 import search_pb2, search_pb2_grpc

#: Calls that must not be repeated blindly (retried only when the server shed them unrun).
NOT_IDEMPOTENT = frozenset({"CreateCollection", "DropCollection"})
GET_CHUNK = 500


def _total(items: Iterable[Item]) -> int | None:
    return len(items) if isinstance(items, Sequence) else None


def _query_defaults(
    k: int,
    modalities: Iterable[Modality | str],
    filter: Mapping[str, Any] | None,
    model_id: str,
    sample_rate: int | None,
) -> dict[str, Any]:
    return {
        "k": k,
        "modalities": tuple(modalities),
        "filter": filter,
        "model_id": model_id,
        "sample_rate": sample_rate,
    }


class SearchClient(_SyncClient):
    """Blocking client of the search service. ``upsert`` sends ``batch_size`` items a request
    (each request is committed atomically, and retried safely: upserting an id twice stores it
    once); ``upsert_stream`` is the streaming path for bulk."""

    def __init__(self, target: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(target, *args, **kwargs)
        self.stub = search_pb2_grpc.SearchServiceStub(self._channel)

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        fn = getattr(self.stub, method)
        return self._invoke(fn, request, timeout, idempotent=method not in NOT_IDEMPOTENT)

    def create_collection(self, name: str | Collection, **settings: Any) -> Collection:
        """``settings`` are Collection's fields (dim, metric, index, index_params, model_id)."""
        request = search_pb2.CreateCollectionRequest(config=_config(name, settings))
        return Collection.from_proto(self._call("CreateCollection", request).config)

    def ensure_collection(self, name: str | Collection, **settings: Any) -> CollectionInfo:
        """The collection, created first when it does not exist (its settings are not
        compared with ``settings``)."""
        key = name.name if isinstance(name, Collection) else name
        try:
            return self.describe_collection(key)
        except NotFound:
            self.create_collection(name, **settings)
        return self.describe_collection(key)

    def describe_collection(self, name: str) -> CollectionInfo:
        request = search_pb2.DescribeCollectionRequest(collection=name)
        return _info(self._call("DescribeCollection", request))

    def list_collections(self) -> list[Collection]:
        reply = self._call("ListCollections", search_pb2.ListCollectionsRequest())
        return [Collection.from_proto(c) for c in reply.collections]

    def drop_collection(self, name: str) -> None:
        self._call("DropCollection", search_pb2.DropCollectionRequest(collection=name))

    def upsert(
        self,
        collection: str,
        items: Iterable[Item],
        batch_size: int | None = None,
        timeout: float | None = None,
        *,
        show_progress: bool = False,
    ) -> list[str]:
        """The stored ids, in order. A refused item is named by its number in ``items``
        (``.index`` of the error); the chunks before it are stored."""
        ids: list[str] = []
        requests = _upsert_requests(collection, items, batch_size or self.batch_size)
        with _progress(_total(items), show_progress, f"upserting into {collection!r}") as bar:
            for start, request in requests:
                with item_numbers(start):
                    ids.extend(self._call("Upsert", request, timeout).ids)
                bar.update(len(request.items))
        return ids

    def upsert_stream(
        self,
        collection: str,
        items: Iterable[Item],
        batch_size: int | None = None,
        timeout: float = 3600.0,
    ) -> Iterator[list[str]]:
        """Streams ``items`` (any iterable, read lazily); yields each chunk's ids once the
        service has committed it (iterate to the end: nothing is sent otherwise). Not retried."""
        chunks = _upsert_requests(
            collection, items, batch_size or self.batch_size, search_pb2.UpsertStreamRequest
        )
        requests = (request for _, request in chunks)
        with rpc_errors():
            for ack in self.stub.UpsertStream(requests, **self._call_kwargs(timeout)):
                yield list(ack.ids)

    def get(self, collection: str, ids: Sequence[str]) -> list[StoredItem]:
        """The stored items among ``ids`` (missing ids are left out)."""
        out: list[StoredItem] = []
        for i in range(0, len(ids), GET_CHUNK):
            request = search_pb2.GetRequest(collection=collection, ids=ids[i : i + GET_CHUNK])
            out.extend(_stored(self._call("Get", request)))
        return out

    def delete(
        self,
        collection: str,
        ids: Sequence[str] = (),
        filter: Mapping[str, Any] | None = None,
    ) -> list[str]:
        """Deletes by ids or by a metadata filter; returns the ids deleted."""
        request = search_pb2.DeleteRequest(collection=collection, ids=list(ids))
        if filter:
            request.filter.CopyFrom(dict_to_struct(filter))
        return list(self._call("Delete", request).ids)

    def query(
        self,
        collection: str,
        *,
        text: str | None = None,
        image: Media | None = None,
        audio: Media | None = None,
        vector: Sequence[float] | np.ndarray | None = None,
        id: str | None = None,
        k: int = 10,
        modalities: Iterable[Modality | str] = (),
        filter: Mapping[str, Any] | None = None,
        model_id: str = "",
        sample_rate: int | None = None,
        timeout: float | None = None,
        recall_target: float = 0.0,
    ) -> list[Hit]:
        """The ``k`` nearest items to one of text, a picture, a sound (bytes, a path, a PIL
        image or an array), a vector or a stored item's id, among ``modalities`` (all when
        empty) that match ``filter`` (e.g. ``{"metadata": {"kind": "dog", "year": {"gte":
        2000}}}``). ``recall_target`` in (0, 1] asks an approximate index for that recall@10
        (its calibrated search effort for it); 0 uses the collection's."""
        given = {"text": text, "image": image, "audio": audio, "vector": vector, "id": id}
        request = _query_request(collection, k, modalities, filter, model_id, given, sample_rate)
        request.recall_target = recall_target
        return _hits(self._call("Query", request, timeout))

    def query_batch(
        self,
        collection: str,
        queries: Iterable[Mapping[str, Any]],
        *,
        k: int = 10,
        modalities: Iterable[Modality | str] = (),
        filter: Mapping[str, Any] | None = None,
        model_id: str = "",
        sample_rate: int | None = None,
        batch_size: int | None = None,
        timeout: float | None = None,
    ) -> list[list[Hit]]:
        """The hits of many queries, in order, ``batch_size`` queries a call (``QueryBatch``).
        A query is a mapping of ``query``'s keyword arguments: one of ``text``, ``image``,
        ``audio``, ``vector`` or ``id``, and any of ``k``, ``modalities``, ``filter``,
        ``model_id``, ``sample_rate`` (this call's by default), e.g. ``[{"vector": v} for v in
        matrix]``. A refused query is named by its number in ``queries`` (``.index``); the
        calls before it were answered but their hits are not returned."""
        defaults = _query_defaults(k, modalities, filter, model_id, sample_rate)
        size = batch_size or self.batch_size
        out: list[list[Hit]] = []
        for start, request in _query_batch_requests(collection, queries, defaults, size):
            with item_numbers(start, "query"):
                out.extend(_batch_hits(self._call("QueryBatch", request, timeout)))
        return out

    def classify(
        self,
        labels: Sequence[str],
        *,
        text: str | None = None,
        image: Media | None = None,
        audio: Media | None = None,
        template: str = "",
        temperature: float = 0.0,
        sample_rate: int | None = None,
        timeout: float | None = None,
    ) -> list[LabelScore]:
        """Zero-shot classification: every label, best first, with its cosine score and softmax
        probability. ``template`` (e.g. "a photo of a {}") wraps each label; ``temperature`` 0
        is the service's default (0.01)."""
        given = {"text": text, "image": image, "audio": audio}
        request = _classify_request(given, labels, template, temperature, sample_rate)
        return _labels(self._call("Classify", request, timeout))

    def snapshot(self, collection: str = "") -> dict[str, int]:
        """Snapshots one collection (every one when empty); returns the sequence numbers."""
        request = search_pb2.SnapshotRequest(collection=collection)
        return dict(self._call("Snapshot", request).snapshot_seq)


class AsyncSearchClient(_AsyncClient):
    """asyncio client of the search service: the same methods as SearchClient, awaited;
    ``upsert`` sends at most ``max_concurrency`` chunks at once."""

    def __init__(self, target: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(target, *args, **kwargs)
        self.stub = search_pb2_grpc.SearchServiceStub(self._channel)

    async def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        fn = getattr(self.stub, method)
        return await self._invoke(fn, request, timeout, idempotent=method not in NOT_IDEMPOTENT)

    async def create_collection(self, name: str | Collection, **settings: Any) -> Collection:
        request = search_pb2.CreateCollectionRequest(config=_config(name, settings))
        return Collection.from_proto((await self._call("CreateCollection", request)).config)

    async def ensure_collection(self, name: str | Collection, **settings: Any) -> CollectionInfo:
        key = name.name if isinstance(name, Collection) else name
        try:
            return await self.describe_collection(key)
        except NotFound:
            await self.create_collection(name, **settings)
        return await self.describe_collection(key)

    async def describe_collection(self, name: str) -> CollectionInfo:
        request = search_pb2.DescribeCollectionRequest(collection=name)
        return _info(await self._call("DescribeCollection", request))

    async def list_collections(self) -> list[Collection]:
        reply = await self._call("ListCollections", search_pb2.ListCollectionsRequest())
        return [Collection.from_proto(c) for c in reply.collections]

    async def drop_collection(self, name: str) -> None:
        await self._call("DropCollection", search_pb2.DropCollectionRequest(collection=name))

    async def upsert(
        self,
        collection: str,
        items: Iterable[Item],
        batch_size: int | None = None,
        timeout: float | None = None,
        *,
        show_progress: bool = False,
    ) -> list[str]:
        requests = list(_upsert_requests(collection, items, batch_size or self.batch_size))
        total = sum(len(r.items) for _, r in requests)
        with _progress(total, show_progress, f"upserting into {collection!r}") as bar:

            async def one(start: int, request: Any) -> list[str]:
                async with self._limit:
                    with item_numbers(start):
                        reply = await self._call("Upsert", request, timeout)
                bar.update(len(request.items))
                return list(reply.ids)

            chunks = await in_order([one(s, r) for s, r in requests])
        return [i for ids in chunks for i in ids]

    async def upsert_stream(
        self,
        collection: str,
        items: Iterable[Item],
        batch_size: int | None = None,
        timeout: float = 3600.0,
    ) -> AsyncIterator[list[str]]:
        chunks = _upsert_requests(
            collection, items, batch_size or self.batch_size, search_pb2.UpsertStreamRequest
        )
        requests = (request for _, request in chunks)
        with rpc_errors():
            async for ack in self.stub.UpsertStream(requests, **self._call_kwargs(timeout)):
                yield list(ack.ids)

    async def get(self, collection: str, ids: Sequence[str]) -> list[StoredItem]:
        out: list[StoredItem] = []
        for i in range(0, len(ids), GET_CHUNK):
            request = search_pb2.GetRequest(collection=collection, ids=ids[i : i + GET_CHUNK])
            out.extend(_stored(await self._call("Get", request)))
        return out

    async def delete(
        self,
        collection: str,
        ids: Sequence[str] = (),
        filter: Mapping[str, Any] | None = None,
    ) -> list[str]:
        request = search_pb2.DeleteRequest(collection=collection, ids=list(ids))
        if filter:
            request.filter.CopyFrom(dict_to_struct(filter))
        return list((await self._call("Delete", request)).ids)

    async def query(
        self,
        collection: str,
        *,
        text: str | None = None,
        image: Media | None = None,
        audio: Media | None = None,
        vector: Sequence[float] | np.ndarray | None = None,
        id: str | None = None,
        k: int = 10,
        modalities: Iterable[Modality | str] = (),
        filter: Mapping[str, Any] | None = None,
        model_id: str = "",
        sample_rate: int | None = None,
        timeout: float | None = None,
        recall_target: float = 0.0,
    ) -> list[Hit]:
        given = {"text": text, "image": image, "audio": audio, "vector": vector, "id": id}
        request = _query_request(collection, k, modalities, filter, model_id, given, sample_rate)
        request.recall_target = recall_target
        return _hits(await self._call("Query", request, timeout))

    async def query_batch(
        self,
        collection: str,
        queries: Iterable[Mapping[str, Any]],
        *,
        k: int = 10,
        modalities: Iterable[Modality | str] = (),
        filter: Mapping[str, Any] | None = None,
        model_id: str = "",
        sample_rate: int | None = None,
        batch_size: int | None = None,
        timeout: float | None = None,
    ) -> list[list[Hit]]:
        """As SearchClient.query_batch; at most ``max_concurrency`` calls at once."""
        defaults = _query_defaults(k, modalities, filter, model_id, sample_rate)
        size = batch_size or self.batch_size

        async def one(start: int, request: search_pb2.QueryBatchRequest) -> list[list[Hit]]:
            async with self._limit:
                with item_numbers(start, "query"):
                    return _batch_hits(await self._call("QueryBatch", request, timeout))

        requests = list(_query_batch_requests(collection, queries, defaults, size))
        chunks = await in_order([one(s, r) for s, r in requests])
        return [hits for chunk in chunks for hits in chunk]

    async def classify(
        self,
        labels: Sequence[str],
        *,
        text: str | None = None,
        image: Media | None = None,
        audio: Media | None = None,
        template: str = "",
        temperature: float = 0.0,
        sample_rate: int | None = None,
        timeout: float | None = None,
    ) -> list[LabelScore]:
        given = {"text": text, "image": image, "audio": audio}
        request = _classify_request(given, labels, template, temperature, sample_rate)
        return _labels(await self._call("Classify", request, timeout))

    async def snapshot(self, collection: str = "") -> dict[str, int]:
        request = search_pb2.SnapshotRequest(collection=collection)
        return dict((await self._call("Snapshot", request)).snapshot_seq)
