"""Python clients of the services, sync and asyncio: ``EncoderClient`` (vectors of texts, pictures
and sounds) and ``SearchClient`` (collections, upsert, get, delete, query).

    from synesthesia.client import EncoderClient, Item, SearchClient
    with EncoderClient("localhost:50053") as audio:
        vectors = audio.embed("audio", [open("bark.wav", "rb").read()])
    with SearchClient("localhost:50054") as search:
        search.ensure_collection("gallery")
        search.upsert("gallery", [Item("dog", data=png_bytes, modality="image")])
        hits = search.query("gallery", audio=bark_bytes, modalities=["image"], k=5)

A status other than OK is raised as the project's own exception (``synesthesia.errors``:
InvalidInput, NotFound, AlreadyExists, FailedPrecondition, Unavailable, DeadlineExceeded, …), with
the status code's name in ``code`` and the server's message in ``message``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import (
    AsyncIterator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import grpc
import numpy as np
from google.protobuf import json_format, struct_pb2

from synesthesia.errors import InvalidInput, NotFound, error_for_status
from synesthesia.modality import Modality
from synesthesia.protoconv import modality_from_proto, modality_to_proto
from synesthesia.serving.server import DEFAULT_MAX_MESSAGE_BYTES, channel_options
from synesthesia.v1 import encoder_pb2, encoder_pb2_grpc, search_pb2, search_pb2_grpc

Content = str | bytes


@contextmanager
def rpc_errors() -> Iterator[None]:
    """Raises a ``grpc.RpcError`` from inside as the matching ``synesthesia.errors`` exception."""
    try:
        yield
    except grpc.RpcError as err:
        code = err.code()  # type: ignore[attr-defined]
        name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
        raise error_for_status(name, err.details() or name) from err  # type: ignore[attr-defined]


class _ClientBase:
    """What every client shares: target, deadline, message limits and call metadata.

    ``application`` picks the Ray Serve application behind a shared Ray gRPC proxy (e.g. "text");
    the standalone services ignore it. ``keepalive=False`` sends no keepalive pings (for a client
    that may sit idle for long, like the search page)."""

    def __init__(
        self,
        target: str,
        timeout: float = 60.0,
        batch_size: int = 64,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        application: str | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        keepalive: bool = True,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.batch_size = batch_size
        self.max_message_bytes = max_message_bytes
        self.metadata = (*((("application", application),) if application else ()), *metadata)
        options = channel_options(max_message_bytes)
        self._options = options if keepalive else [o for o in options if "keepalive" not in o[0]]

    def _call_kwargs(self, timeout: float | None = None) -> dict[str, Any]:
        request_id = ("x-request-id", uuid.uuid4().hex[:16])
        return {
            "timeout": self.timeout if timeout is None else timeout,
            "metadata": (request_id, *self.metadata),
        }


class _SyncClient(_ClientBase):
    """A blocking channel, closed by ``close()`` or at the end of a ``with`` block."""

    def __init__(self, target: str, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self._channel = grpc.insecure_channel(target, options=self._options)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AsyncClient(_ClientBase):
    """An asyncio channel, closed by ``await close()`` or at the end of an ``async with``."""

    def __init__(self, target: str, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self._channel = grpc.aio.insecure_channel(target, options=self._options)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


# --- encoders ---------------------------------------------------------------------------------


def _encoder_requests(
    modality: Modality | str,
    contents: Sequence[Content],
    ids: Sequence[str] | None,
    batch_size: int,
) -> list[encoder_pb2.EmbedRequest]:
    m = Modality.parse(modality)
    items = []
    for i, c in enumerate(contents):
        item_id = ids[i] if ids else ""
        if isinstance(c, str) and m is Modality.TEXT:
            items.append(encoder_pb2.Item(text=c, id=item_id))
        elif isinstance(c, bytes | bytearray):
            items.append(encoder_pb2.Item(data=bytes(c), id=item_id))
        else:
            raise TypeError(f"item {i}: expected bytes (or str for text), got {type(c).__name__}")
    return [
        encoder_pb2.EmbedRequest(modality=modality_to_proto(m), items=items[i : i + batch_size])
        for i in range(0, len(items), batch_size)
    ]


def _to_array(responses: Sequence[encoder_pb2.EmbedResponse], dim: int) -> np.ndarray:
    rows = [np.asarray(e.values, dtype=np.float32) for r in responses for e in r.embeddings]
    return np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)


class EncoderClient(_SyncClient):
    """Blocking client of one encoder service; large inputs are split into requests of
    ``batch_size`` items and the vectors come back as one float32 [n, dim] array in input order."""

    def __init__(self, target: str, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self.stub = encoder_pb2_grpc.EncoderServiceStub(self._channel)

    def info(self) -> encoder_pb2.InfoResponse:
        with rpc_errors():
            return self.stub.Info(encoder_pb2.InfoRequest(), **self._call_kwargs())

    def embed_response(
        self,
        modality: Modality | str,
        contents: Sequence[Content],
        ids: Sequence[str] | None = None,
    ) -> list[encoder_pb2.EmbedResponse]:
        requests = _encoder_requests(modality, contents, ids, self.batch_size)
        with rpc_errors():
            return [self.stub.Embed(r, **self._call_kwargs()) for r in requests]

    def embed(
        self,
        modality: Modality | str,
        contents: Sequence[Content],
        ids: Sequence[str] | None = None,
    ) -> np.ndarray:
        responses = self.embed_response(modality, contents, ids)
        return _to_array(responses, responses[0].dim if responses else self.info().dim)


class AsyncEncoderClient(_AsyncClient):
    """asyncio client of one encoder service; chunks are sent concurrently."""

    def __init__(self, target: str, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self.stub = encoder_pb2_grpc.EncoderServiceStub(self._channel)

    async def info(self) -> encoder_pb2.InfoResponse:
        with rpc_errors():
            return await self.stub.Info(encoder_pb2.InfoRequest(), **self._call_kwargs())

    async def embed(
        self,
        modality: Modality | str,
        contents: Sequence[Content],
        ids: Sequence[str] | None = None,
    ) -> np.ndarray:
        requests = _encoder_requests(modality, contents, ids, self.batch_size)
        with rpc_errors():
            responses = await asyncio.gather(
                *(self.stub.Embed(r, **self._call_kwargs()) for r in requests)
            )
        return _to_array(responses, responses[0].dim if responses else (await self.info()).dim)


# --- search: plain data in and out ------------------------------------------------------------

_METRICS = {"ip": search_pb2.METRIC_IP, "l2": search_pb2.METRIC_L2}
_INDEXES = {
    "flat": search_pb2.INDEX_KIND_FLAT,
    "hnsw": search_pb2.INDEX_KIND_HNSW,
    "ivf-pq": search_pb2.INDEX_KIND_IVF_PQ,
}


@dataclass(frozen=True)
class Collection:
    """A collection's settings. ``dim=0`` at creation asks the encoders for dim and model id."""

    name: str
    dim: int = 0
    metric: str = "ip"  # ip | l2
    index: str = "flat"  # flat | hnsw | ivf-pq
    index_params: Mapping[str, int] = field(default_factory=dict)
    model_id: str = ""

    def to_proto(self) -> search_pb2.CollectionConfig:
        try:
            metric, kind = _METRICS[self.metric], _INDEXES[self.index]
        except KeyError as err:
            raise InvalidInput(
                f"unknown metric or index {err.args[0]!r}: metric is one of "
                f"{', '.join(_METRICS)}; index one of {', '.join(_INDEXES)}"
            ) from None
        return search_pb2.CollectionConfig(
            name=self.name,
            dim=self.dim,
            metric=metric,
            index_kind=kind,
            index_params=dict(self.index_params),
            model_id=self.model_id,
        )

    @classmethod
    def from_proto(cls, c: search_pb2.CollectionConfig) -> Collection:
        metric = {v: k for k, v in _METRICS.items()}.get(c.metric, "ip")
        index = {v: k for k, v in _INDEXES.items()}.get(c.index_kind, "flat")
        return cls(c.name, c.dim, metric, index, dict(c.index_params), c.model_id)


@dataclass(frozen=True)
class CollectionInfo:
    """``describe_collection``: the settings and the counters."""

    config: Collection
    count: int
    tombstones: int
    bytes_on_disk: int
    last_seq: int
    snapshot_seq: int
    trained: bool


@dataclass(frozen=True)
class Item:
    """One item to upsert: its id, exactly one of ``vector``, ``text`` or ``data`` (picture or
    sound bytes, embedded by the service's encoders), its modality (implied for ``text``), and
    JSON-like metadata. ``model_id`` names the model a ``vector`` came from (optional)."""

    id: str
    vector: Sequence[float] | np.ndarray | None = None
    text: str | None = None
    data: bytes | None = None
    modality: Modality | str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    model_id: str = ""

    def to_proto(self) -> search_pb2.UpsertItem:
        given = [k for k in ("vector", "text", "data") if getattr(self, k) is not None]
        if len(given) != 1:
            raise InvalidInput(f"item {self.id!r}: give exactly one of vector, text or data")
        item = search_pb2.UpsertItem(id=self.id, metadata=_struct(self.metadata))
        if self.modality is not None:
            item.modality = modality_to_proto(self.modality)
        elif self.text is None:
            raise InvalidInput(f"item {self.id!r}: a vector or data needs its modality")
        if self.vector is not None:
            values = np.asarray(self.vector, dtype=np.float32).ravel().tolist()
            item.vector.CopyFrom(search_pb2.Vector(values=values, model_id=self.model_id))
        elif self.text is not None:
            item.text = self.text
        else:
            item.data = bytes(self.data or b"")
        return item


@dataclass(frozen=True)
class StoredItem:
    """``get``: a stored item's vector, modality and metadata."""

    id: str
    vector: np.ndarray
    modality: Modality
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Hit:
    """One query result: higher ``score`` is nearer (cosine for ip; -distance for l2)."""

    id: str
    score: float
    modality: Modality
    metadata: dict[str, Any]


def _struct(d: Mapping[str, Any] | None) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    if d:
        s.update(dict(d))
    return s


def _dict(s: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(s)


def _query_request(
    collection: str,
    k: int,
    modalities: Iterable[Modality | str],
    filter: Mapping[str, Any] | None,
    model_id: str,
    given: dict[str, Any],
) -> search_pb2.QueryRequest:
    named = {key: v for key, v in given.items() if v is not None}
    if len(named) != 1:
        raise InvalidInput("query by exactly one of text, image, audio, vector or id")
    [(key, value)] = named.items()
    req = search_pb2.QueryRequest(collection=collection, k=k)
    req.modalities.extend(modality_to_proto(m) for m in modalities)
    if filter:
        req.filter.CopyFrom(_struct(filter))
    if key == "vector":
        values = np.asarray(value, dtype=np.float32).ravel().tolist()
        req.vector.CopyFrom(search_pb2.Vector(values=values, model_id=model_id))
    else:
        setattr(req, key, value)
    return req


def _hits(reply: search_pb2.QueryResponse) -> list[Hit]:
    return [
        Hit(h.id, float(h.score), modality_from_proto(h.modality), _dict(h.metadata))
        for h in reply.hits
    ]


def _stored(reply: search_pb2.GetResponse) -> list[StoredItem]:
    return [
        StoredItem(
            i.id,
            np.asarray(i.vector, dtype=np.float32),
            modality_from_proto(i.modality),
            _dict(i.metadata),
        )
        for i in reply.items
    ]


def _info(reply: search_pb2.DescribeCollectionResponse) -> CollectionInfo:
    return CollectionInfo(
        Collection.from_proto(reply.config),
        reply.count,
        reply.tombstones,
        reply.bytes_on_disk,
        reply.last_seq,
        reply.snapshot_seq,
        reply.trained,
    )


def _upsert_requests(
    collection: str, items: Iterable[Item], batch_size: int, message: Any = search_pb2.UpsertRequest
) -> Iterator[Any]:
    """``message``: UpsertRequest (unary calls) or UpsertStreamRequest (the stream)."""
    batch: list[search_pb2.UpsertItem] = []
    for item in items:
        batch.append(item.to_proto())
        if len(batch) >= batch_size:
            yield message(collection=collection, items=batch)
            batch = []
    if batch:
        yield message(collection=collection, items=batch)


def _config(name: str | Collection, settings: dict[str, Any]) -> search_pb2.CollectionConfig:
    return (name if isinstance(name, Collection) else Collection(name, **settings)).to_proto()


# --- search: the clients ----------------------------------------------------------------------


class SearchClient(_SyncClient):
    """Blocking client of the search service. ``upsert`` sends ``batch_size`` items a request
    (each request is committed atomically); ``upsert_stream`` is the streaming path for bulk."""

    def __init__(self, target: str, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self.stub = search_pb2_grpc.SearchServiceStub(self._channel)

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        with rpc_errors():
            return getattr(self.stub, method)(request, **self._call_kwargs(timeout))

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
    ) -> list[str]:
        """The stored ids, in order."""
        ids: list[str] = []
        for request in _upsert_requests(collection, items, batch_size or self.batch_size):
            ids.extend(self._call("Upsert", request, timeout).ids)
        return ids

    def upsert_stream(
        self,
        collection: str,
        items: Iterable[Item],
        batch_size: int | None = None,
        timeout: float = 3600.0,
    ) -> Iterator[list[str]]:
        """Streams ``items`` (any iterable, read lazily); yields each chunk's ids once the
        service has committed it (iterate to the end: nothing is sent otherwise)."""
        requests = _upsert_requests(
            collection, items, batch_size or self.batch_size, search_pb2.UpsertStreamRequest
        )
        with rpc_errors():
            for ack in self.stub.UpsertStream(requests, **self._call_kwargs(timeout)):
                yield list(ack.ids)

    def get(self, collection: str, ids: Sequence[str]) -> list[StoredItem]:
        """The stored items among ``ids`` (missing ids are left out)."""
        out: list[StoredItem] = []
        for i in range(0, len(ids), 500):
            request = search_pb2.GetRequest(collection=collection, ids=ids[i : i + 500])
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
            request.filter.CopyFrom(_struct(filter))
        return list(self._call("Delete", request).ids)

    def query(
        self,
        collection: str,
        *,
        text: str | None = None,
        image: bytes | None = None,
        audio: bytes | None = None,
        vector: Sequence[float] | np.ndarray | None = None,
        id: str | None = None,
        k: int = 10,
        modalities: Iterable[Modality | str] = (),
        filter: Mapping[str, Any] | None = None,
        model_id: str = "",
        timeout: float | None = None,
    ) -> list[Hit]:
        """The ``k`` nearest items to one of text, image bytes, audio bytes, a vector or a
        stored item's id, among ``modalities`` (all when empty) that match ``filter`` (e.g.
        ``{"metadata": {"kind": "dog", "year": {"gte": 2000}}}``)."""
        given = {"text": text, "image": image, "audio": audio, "vector": vector, "id": id}
        request = _query_request(collection, k, modalities, filter, model_id, given)
        return _hits(self._call("Query", request, timeout))

    def snapshot(self, collection: str = "") -> dict[str, int]:
        """Snapshots one collection (every one when empty); returns the sequence numbers."""
        request = search_pb2.SnapshotRequest(collection=collection)
        return dict(self._call("Snapshot", request).snapshot_seq)


class AsyncSearchClient(_AsyncClient):
    """asyncio client of the search service: the same methods as SearchClient, awaited."""

    def __init__(self, target: str, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self.stub = search_pb2_grpc.SearchServiceStub(self._channel)

    async def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        with rpc_errors():
            return await getattr(self.stub, method)(request, **self._call_kwargs(timeout))

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
    ) -> list[str]:
        ids: list[str] = []
        for request in _upsert_requests(collection, items, batch_size or self.batch_size):
            ids.extend((await self._call("Upsert", request, timeout)).ids)
        return ids

    async def upsert_stream(
        self,
        collection: str,
        items: Iterable[Item],
        batch_size: int | None = None,
        timeout: float = 3600.0,
    ) -> AsyncIterator[list[str]]:
        requests = _upsert_requests(
            collection, items, batch_size or self.batch_size, search_pb2.UpsertStreamRequest
        )
        with rpc_errors():
            async for ack in self.stub.UpsertStream(requests, **self._call_kwargs(timeout)):
                yield list(ack.ids)

    async def get(self, collection: str, ids: Sequence[str]) -> list[StoredItem]:
        out: list[StoredItem] = []
        for i in range(0, len(ids), 500):
            request = search_pb2.GetRequest(collection=collection, ids=ids[i : i + 500])
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
            request.filter.CopyFrom(_struct(filter))
        return list((await self._call("Delete", request)).ids)

    async def query(
        self,
        collection: str,
        *,
        text: str | None = None,
        image: bytes | None = None,
        audio: bytes | None = None,
        vector: Sequence[float] | np.ndarray | None = None,
        id: str | None = None,
        k: int = 10,
        modalities: Iterable[Modality | str] = (),
        filter: Mapping[str, Any] | None = None,
        model_id: str = "",
        timeout: float | None = None,
    ) -> list[Hit]:
        given = {"text": text, "image": image, "audio": audio, "vector": vector, "id": id}
        request = _query_request(collection, k, modalities, filter, model_id, given)
        return _hits(await self._call("Query", request, timeout))

    async def snapshot(self, collection: str = "") -> dict[str, int]:
        request = search_pb2.SnapshotRequest(collection=collection)
        return dict((await self._call("Snapshot", request)).snapshot_seq)
