"""The one search flow: every SearchService RPC as "validate, embed the media, then write or
query", shared by the standalone gRPC servicer and the Ray Serve router. It speaks protobuf on
one side and two small interfaces on the other:

- ``Encoders``: turns media into vectors (gRPC clients of the encoder services, or Ray handles);
- ``Store``: holds the collections (one local IndexManager, or N hash-routed Ray shards).

Everything that can be checked without an encoder is checked before the first embedding call:
the collection exists, k, the filter, ids, vector dimensions, modalities and metadata. A request
that fails any check costs no encoder time, and a failed embedding writes nothing."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from synesthesia.errors import FailedPrecondition, InvalidInput, SynesthesiaError, item_error
from synesthesia.index.filters import parse_filter
from synesthesia.index.types import (
    CollectionInfo,
    CollectionSpec,
    Hit,
    StoredItem,
    UpsertItem,
    validate_name,
)
from synesthesia.index.validate import (
    as_vector,
    check_id,
    check_items,
    check_k,
    check_metadata,
    check_recall,
)
from synesthesia.modality import Modality
from synesthesia.protoconv import (
    config_to_proto,
    hits_to_proto,
    index_kind_from_proto,
    metric_from_proto,
    modality_from_proto,
    modality_to_proto,
    stored_to_proto,
    struct_to_dict,
)
from synesthesia.v1 import search_pb2

Content = str | bytes
_QUERY_MODALITY = {"text": Modality.TEXT, "image": Modality.IMAGE, "audio": Modality.AUDIO}
MAX_LABELS = 1000
MAX_LABEL_CHARS = 1000
DEFAULT_TEMPERATURE = 0.01
#: Hits a QueryBatch may ask for in all (k summed over its queries).
MAX_BATCH_HITS = 100_000
_NO_QUERY = "query needs one of text, image, audio, vector or id"
# An encoder's refusal names the item by its place in the encoder's batch.
_ENCODER_ITEM = re.compile(r"^item (\d+)(?: \(id '[^']*'\))?: ")


@dataclass
class EncodedBatch:
    vectors: np.ndarray  # float32 [n, dim], unit-norm, in request order
    model_id: str


@dataclass(frozen=True)
class EncoderInfo:
    model_id: str
    dim: int


class Encoders(Protocol):
    """Media -> vectors. ``deadline``: absolute ``time.monotonic()`` by which the caller needs
    the answer (None: no deadline). Errors are domain errors (synesthesia.errors)."""

    async def embed(
        self,
        modality: Modality,
        contents: Sequence[Content],
        ids: Sequence[str],
        deadline: float | None,
    ) -> EncodedBatch: ...

    async def info(self) -> EncoderInfo: ...


class Store(Protocol):
    """The collections behind the flow. Items reaching ``write`` are already validated as a
    whole batch against ``spec(collection)``."""

    async def create(self, spec: CollectionSpec) -> CollectionSpec: ...
    async def specs(self) -> list[CollectionSpec]: ...
    async def spec(self, collection: str) -> CollectionSpec: ...  # NotFound
    async def describe(self, collection: str) -> CollectionInfo: ...
    async def drop(self, collection: str) -> None: ...
    async def snapshot(self, collection: str) -> dict[str, int]: ...  # "" = every collection
    async def write(self, collection: str, items: list[UpsertItem]) -> int: ...  # last seq
    async def delete(self, collection: str, ids: list[str]) -> list[str]: ...
    async def delete_where(self, collection: str, flt: dict[str, Any]) -> list[str]: ...
    async def get(self, collection: str, ids: list[str]) -> list[StoredItem]: ...
    # recall: the query's own recall@10 target (None: the collection's effort)
    async def query(
        self, collection: str, vector: np.ndarray, k: int, flt: dict[str, Any], recall: float | None
    ) -> list[Hit]: ...
    async def query_batch(  # the hits of every row of ``vectors`` (n x dim), in row order
        self,
        collection: str,
        vectors: np.ndarray,
        k: int,
        flt: dict[str, Any],
        recall: float | None,
    ) -> list[list[Hit]]: ...
    async def query_by_id(
        self, collection: str, item_id: str, k: int, flt: dict[str, Any], recall: float | None
    ) -> list[Hit]: ...


@dataclass
class _Media:
    index: int  # position in the request
    modality: Modality
    content: Content


@dataclass
class _Query:
    """One QueryRequest, checked; ``vector`` is None for an id, and for media until embedded."""

    index: int  # position in the request
    collection: str
    spec: CollectionSpec
    kind: str  # the ``query`` oneof: text, image, audio, vector or id
    k: int
    flt: dict[str, Any]
    recall: float | None  # the query's own recall@10 target
    vector: np.ndarray | None


def filter_key(flt: Mapping[str, Any]) -> str:
    """A filter as text: equal filters, equal keys (queries that may be searched together)."""
    return json.dumps(flt, sort_keys=True) if flt else ""


def _encoder_item(exc: InvalidInput, count: int) -> tuple[int, str] | None:
    """(the item's number within the encoder's batch of ``count``, the problem) of an encoder's
    refusal naming an item; None for any other error."""
    found = _ENCODER_ITEM.match(exc.message)
    if found is None or int(found.group(1)) >= count:
        return None
    return int(found.group(1)), exc.message[found.end() :]


@contextmanager
def _query_numbered(index: int) -> Iterator[None]:
    """Errors about query ``index`` of a batch name it: "query 3: k must be between 1 and …"."""
    try:
        yield
    except SynesthesiaError as exc:
        problem = _ENCODER_ITEM.sub("", exc.message, count=1)  # "item 0 (id 'query'): "
        raise type(exc)(f"query {index}: {problem}", code=exc.code) from None


def _create_spec(config: search_pb2.CollectionConfig) -> CollectionSpec:
    return CollectionSpec.create(
        config.name,
        int(config.dim),
        metric_from_proto(config.metric),
        index_kind_from_proto(config.index_kind),
        dict(config.index_params),
        config.model_id,
    )


def _metadata(index: int, item: search_pb2.UpsertItem) -> dict[str, Any]:
    meta = struct_to_dict(item.metadata, f"item {index} (id {item.id!r}): metadata")
    for key, value in meta.items():
        if isinstance(value, dict | list) or value is None:
            raise item_error(index, item.id, f"metadata {key!r} must be a string, number or bool")
    return check_metadata(meta, index, item.id)


class SearchFlow:
    def __init__(self, store: Store, encoders: Encoders, max_items_per_request: int) -> None:
        self.store = store
        self.encoders = encoders
        self.max_items = max_items_per_request

    # -- collections ---------------------------------------------------------------------------
    async def create(
        self, request: search_pb2.CreateCollectionRequest
    ) -> search_pb2.CreateCollectionResponse:
        config = search_pb2.CollectionConfig()
        config.CopyFrom(request.config)
        if config.dim == 0:  # ask the encoders what they produce
            validate_name(config.name)  # a bad request costs no encoder call
            metric_from_proto(config.metric)
            index_kind_from_proto(config.index_kind)
            info = await self.encoders.info()
            if config.model_id and config.model_id != info.model_id:
                raise InvalidInput(
                    f"dim is 0 and model_id {config.model_id!r} differs from the encoders' "
                    f"{info.model_id!r}: give dim explicitly"
                )
            config.dim, config.model_id = info.dim, info.model_id
        spec = await self.store.create(_create_spec(config))
        return search_pb2.CreateCollectionResponse(config=config_to_proto(spec))

    async def list_collections(self) -> search_pb2.ListCollectionsResponse:
        specs = sorted(await self.store.specs(), key=lambda s: s.name)
        return search_pb2.ListCollectionsResponse(collections=[config_to_proto(s) for s in specs])

    async def describe(self, collection: str) -> search_pb2.DescribeCollectionResponse:
        info = await self.store.describe(collection)
        return search_pb2.DescribeCollectionResponse(
            config=config_to_proto(info.spec),
            count=info.count,
            tombstones=info.tombstones,
            bytes_on_disk=info.bytes_on_disk,
            last_seq=info.last_seq,
            snapshot_seq=info.snapshot_seq,
            trained=info.trained,
            search_effort=info.search_effort,
            measured_recall=info.measured_recall,
            calibrated_count=info.calibrated_count,
        )

    async def drop(self, collection: str) -> search_pb2.DropCollectionResponse:
        await self.store.drop(collection)
        return search_pb2.DropCollectionResponse()

    async def snapshot(self, collection: str) -> search_pb2.SnapshotResponse:
        return search_pb2.SnapshotResponse(snapshot_seq=await self.store.snapshot(collection))

    # -- items ---------------------------------------------------------------------------------
    def _parse_items(
        self, spec: CollectionSpec, items: Sequence[search_pb2.UpsertItem]
    ) -> tuple[list[UpsertItem | None], list[_Media]]:
        """Checks every item that can be checked without an encoder; media items come back as
        None placeholders plus the list of what to embed."""
        if not items:
            raise InvalidInput("upsert has no items")
        if len(items) > self.max_items:
            raise InvalidInput(f"upsert has {len(items)} items; the limit is {self.max_items}")
        seen: dict[str, int] = {}
        out: list[UpsertItem | None] = []
        media: list[_Media] = []
        for i, it in enumerate(items):
            item_id = check_id(it.id, i)
            if item_id in seen:
                raise item_error(
                    i, item_id, f"duplicate id in the batch (also item {seen[item_id]})"
                )
            seen[item_id] = i
            kind = it.WhichOneof("content")
            if kind is None:
                raise item_error(i, it.id, "item has no content (set vector, text or data)")
            if kind == "text":
                if it.modality not in (0, modality_to_proto(Modality.TEXT)):
                    raise item_error(i, it.id, "text content must have modality MODALITY_TEXT")
                modality = Modality.TEXT
            else:
                try:
                    modality = modality_from_proto(it.modality)
                except InvalidInput as exc:
                    raise item_error(i, it.id, str(exc)) from None
            meta = _metadata(i, it)
            if kind == "vector":
                model_id = it.vector.model_id or None
                if model_id and spec.model_id and model_id != spec.model_id:
                    raise FailedPrecondition(
                        f"item {i} (id {item_id!r}): vector comes from model {model_id!r} but"
                        f" collection {spec.name!r} holds vectors of model {spec.model_id!r}"
                    )
                vector = as_vector(np.asarray(it.vector.values, np.float32), spec.dim, i, item_id)
                out.append(UpsertItem(item_id, vector, modality, meta, model_id))
            else:  # text, or bytes of any modality (UTF-8 for text)
                media.append(_Media(i, modality, it.text if kind == "text" else it.data))
                out.append(None)
        return out, media

    async def _embed_media(
        self,
        spec: CollectionSpec,
        items: list[UpsertItem | None],
        media: list[_Media],
        requests: Sequence[search_pb2.UpsertItem],
        deadline: float | None,
    ) -> list[UpsertItem]:
        by_modality: dict[Modality, list[_Media]] = {}
        for m in media:
            by_modality.setdefault(m.modality, []).append(m)

        async def one(modality: Modality, part: list[_Media]) -> None:
            try:
                batch = await self.encoders.embed(
                    modality,
                    [m.content for m in part],
                    [requests[m.index].id for m in part],
                    deadline,
                )
            except InvalidInput as exc:  # numbered within ``part``: say the request's number
                named = _encoder_item(exc, len(part))
                if named is None:
                    raise
                i = part[named[0]].index
                raise item_error(i, requests[i].id, named[1]) from None
            for m, vec in zip(part, batch.vectors, strict=True):
                it = requests[m.index]
                meta = _metadata(m.index, it)
                items[m.index] = UpsertItem(it.id, vec, modality, meta, batch.model_id)

        await asyncio.gather(*(one(m, part) for m, part in by_modality.items()))
        done = [it for it in items if it is not None]
        assert len(done) == len(items)
        check_items(spec, done)  # the whole batch, with the caller's numbering, before any write
        return done

    async def upsert(
        self, collection: str, requests: Sequence[search_pb2.UpsertItem], deadline: float | None
    ) -> tuple[list[str], int]:
        """Returns (ids in request order, last sequence number)."""
        spec = await self.store.spec(collection)  # NotFound before anything else
        items, media = self._parse_items(spec, requests)
        if media:
            written = await self._embed_media(spec, items, media, requests, deadline)
        else:
            written = [it for it in items if it is not None]
            check_items(spec, written)
        last_seq = await self.store.write(collection, written)
        return [it.id for it in written], last_seq

    async def delete(self, request: search_pb2.DeleteRequest) -> search_pb2.DeleteResponse:
        await self.store.spec(request.collection)
        has_filter = bool(request.filter.fields)
        if request.ids and has_filter:
            raise InvalidInput("delete by ids or by filter, not both")
        if not request.ids and not has_filter:
            raise InvalidInput(
                "delete needs ids or a filter (an empty filter is refused on purpose)"
            )
        if request.ids:
            deleted = await self.store.delete(request.collection, list(request.ids))
        else:
            flt = struct_to_dict(request.filter, "filter")
            parse_filter(flt)
            deleted = await self.store.delete_where(request.collection, flt)
        return search_pb2.DeleteResponse(ids=deleted)

    async def get(self, request: search_pb2.GetRequest) -> search_pb2.GetResponse:
        items = await self.store.get(request.collection, list(request.ids))
        return search_pb2.GetResponse(items=[stored_to_proto(s) for s in items])

    # -- queries -------------------------------------------------------------------------------
    @staticmethod
    def query_filter(request: search_pb2.QueryRequest) -> dict[str, Any]:
        """The request's filter with its ``modalities`` folded in, parsed once to reject a
        malformed one (InvalidInput)."""
        if not request.modalities and not request.filter.fields:
            return {}  # no filter: nothing to parse
        flt = struct_to_dict(request.filter, "filter")
        if request.modalities:
            if "modality" in flt:
                raise InvalidInput(
                    "give the modality restriction in `modalities` or in the filter, not both"
                )
            flt["modality"] = [modality_from_proto(m).value for m in request.modalities]
        parse_filter(flt)
        return flt

    def _check_query(
        self, index: int, request: search_pb2.QueryRequest, spec: CollectionSpec
    ) -> _Query:
        """Everything about a query that can be checked without an encoder."""
        kind = request.WhichOneof("query")
        if kind is None:
            raise InvalidInput(_NO_QUERY)
        k = check_k(request.k)
        flt = self.query_filter(request)
        recall = check_recall(request.recall_target)
        vector = None
        if kind == "id":
            check_id(request.id)
        elif kind == "vector":
            _check_query_model(spec, request.vector.model_id or None)
            vector = as_vector(np.asarray(request.vector.values, np.float32), spec.dim, 0, "query")
        return _Query(index, request.collection, spec, kind, k, flt, recall, vector)

    async def query(
        self, request: search_pb2.QueryRequest, deadline: float | None
    ) -> search_pb2.QueryResponse:
        if request.WhichOneof("query") is None:
            raise InvalidInput(_NO_QUERY)
        spec = await self.store.spec(request.collection)  # NotFound first
        q = self._check_query(0, request, spec)
        if q.kind == "id":
            hits = await self.store.query_by_id(q.collection, request.id, q.k, q.flt, q.recall)
            return _hits(hits)
        if q.vector is None:
            batch = await self.encoders.embed(
                _QUERY_MODALITY[q.kind], [getattr(request, q.kind)], ["query"], deadline
            )
            q.vector = _embedded(spec, batch, 0)
        return _hits(await self.store.query(q.collection, q.vector, q.k, q.flt, q.recall))

    async def query_batch(
        self, request: search_pb2.QueryBatchRequest, deadline: float | None
    ) -> search_pb2.QueryBatchResponse:
        """Every query checked first (in order; the first bad one fails the call, named), then
        the media embedded (one encoder call per modality), then the searches: one store call
        per (collection, k, filter, recall target) of the vectors, one per id query."""
        requests = request.queries
        if not requests:
            raise InvalidInput("query batch has no queries")
        if len(requests) > self.max_items:
            raise InvalidInput(
                f"query batch has {len(requests)} queries; the limit is {self.max_items}"
            )
        specs: dict[str, CollectionSpec] = {}
        queries: list[_Query] = []
        for i, r in enumerate(requests):
            with _query_numbered(i):
                if r.WhichOneof("query") is None:
                    raise InvalidInput(_NO_QUERY)
                if r.collection not in specs:
                    specs[r.collection] = await self.store.spec(r.collection)  # NotFound
                queries.append(self._check_query(i, r, specs[r.collection]))
        total = sum(q.k for q in queries)
        if total > MAX_BATCH_HITS:
            raise InvalidInput(
                f"query batch asks for {total} hits in all (k summed); the limit is "
                f"{MAX_BATCH_HITS}"
            )
        await self._embed_queries(queries, requests, deadline)
        found: list[list[Hit]] = [[] for _ in queries]
        groups: dict[tuple[str, int, str, float | None], list[_Query]] = {}
        for q in queries:
            if q.vector is not None:
                key = (q.collection, q.k, filter_key(q.flt), q.recall)
                groups.setdefault(key, []).append(q)

        async def search(group: list[_Query]) -> None:
            first = group[0]
            vectors = np.stack([q.vector for q in group])  # type: ignore[misc]
            hits = await self.store.query_batch(
                first.collection, vectors, first.k, first.flt, first.recall
            )
            for q, h in zip(group, hits, strict=True):
                found[q.index] = h

        async def by_id(q: _Query) -> None:
            with _query_numbered(q.index):
                found[q.index] = await self.store.query_by_id(
                    q.collection, requests[q.index].id, q.k, q.flt, q.recall
                )

        await asyncio.gather(
            *(search(g) for g in groups.values()),
            *(by_id(q) for q in queries if q.kind == "id"),
        )
        response = search_pb2.QueryBatchResponse()
        for hits in found:
            hits_to_proto(hits, response.results.add().hits)
        return response

    async def _embed_queries(
        self,
        queries: list[_Query],
        requests: Sequence[search_pb2.QueryRequest],
        deadline: float | None,
    ) -> None:
        """The vectors of the media queries: one encoder call per modality."""
        by_modality: dict[Modality, list[_Query]] = {}
        for q in queries:
            if q.kind in _QUERY_MODALITY:
                by_modality.setdefault(_QUERY_MODALITY[q.kind], []).append(q)

        async def one(modality: Modality, part: list[_Query]) -> None:
            contents = [getattr(requests[q.index], q.kind) for q in part]
            try:
                batch = await self.encoders.embed(
                    modality, contents, [f"query {q.index}" for q in part], deadline
                )
            except InvalidInput as exc:  # numbered within ``part``: say the query's number
                named = _encoder_item(exc, len(part))
                if named is None:
                    raise
                raise InvalidInput(f"query {part[named[0]].index}: {named[1]}") from None
            for row, q in enumerate(part):
                with _query_numbered(q.index):
                    q.vector = _embedded(q.spec, batch, row)

        await asyncio.gather(*(one(m, part) for m, part in by_modality.items()))

    # -- classification ------------------------------------------------------------------------
    async def classify(
        self, request: search_pb2.ClassifyRequest, deadline: float | None
    ) -> search_pb2.ClassifyResponse:
        kind = request.WhichOneof("item")
        if kind is None:
            raise InvalidInput("classify needs an item: text, image or audio")
        labels = list(request.labels)
        texts = label_texts(labels, request.template)
        temperature = request.temperature or DEFAULT_TEMPERATURE
        if not (math.isfinite(temperature) and temperature > 0):
            raise InvalidInput(f"temperature must be a positive number, got {temperature}")
        item, words = await asyncio.gather(
            self.encoders.embed(
                _QUERY_MODALITY[kind], [getattr(request, kind)], ["item"], deadline
            ),
            self.encoders.embed(
                Modality.TEXT, texts, [f"label {i}" for i in range(len(texts))], deadline
            ),
        )
        if item.model_id != words.model_id:
            raise FailedPrecondition(
                f"the {kind} encoder serves {item.model_id!r} and the text encoder "
                f"{words.model_id!r}: their vectors cannot be compared"
            )
        scores = words.vectors @ item.vectors[0]
        logits = scores / temperature
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-scores, kind="stable")
        return search_pb2.ClassifyResponse(
            labels=[
                search_pb2.LabelScore(
                    label=labels[i], score=float(scores[i]), probability=float(probs[i])
                )
                for i in order
            ],
            model_id=item.model_id,
        )


def label_texts(labels: Sequence[str], template: str) -> list[str]:
    """The texts to embed for ``labels``: each label inside ``template`` ("{}" marks it)."""
    if not labels:
        raise InvalidInput("classify needs at least one label")
    if len(labels) > MAX_LABELS:
        raise InvalidInput(f"classify has {len(labels)} labels; the limit is {MAX_LABELS}")
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        if not label.strip():
            raise InvalidInput(f"label {i} is empty")
        if len(label) > MAX_LABEL_CHARS:
            raise InvalidInput(f"label {i} is longer than {MAX_LABEL_CHARS} characters")
        if label in seen:
            raise InvalidInput(f"label {i} {label!r} repeats label {seen[label]}")
        seen[label] = i
    if not template:
        return list(labels)
    if template.count("{}") != 1:
        raise InvalidInput('template must contain "{}" exactly once, where the label goes')
    return [template.replace("{}", label) for label in labels]


def _check_query_model(spec: CollectionSpec, model_id: str | None) -> None:
    if model_id and spec.model_id and model_id != spec.model_id:
        raise FailedPrecondition(
            f"collection {spec.name!r} holds vectors of model {spec.model_id!r}; "
            f"the query vector comes from {model_id!r}"
        )


def _embedded(spec: CollectionSpec, batch: EncodedBatch, row: int) -> np.ndarray:
    """Row ``row`` of an encoder's answer as a query vector of ``spec``'s collection."""
    _check_query_model(spec, batch.model_id)
    return as_vector(batch.vectors[row], spec.dim, 0, "query")


def _hits(hits: Sequence[Hit]) -> search_pb2.QueryResponse:
    response = search_pb2.QueryResponse()
    hits_to_proto(hits, response.hits)
    return response


def merge_top_k(lists: Sequence[Sequence[Hit]], k: int) -> list[Hit]:
    """Merges per-shard top-k lists into the global top-k (higher score first, then id)."""
    hits = [h for part in lists for h in part]
    hits.sort(key=lambda h: (-h.score, h.id))
    return hits[:k]


def spec_info(parts: Sequence[CollectionInfo]) -> CollectionInfo:
    """One collection's description from its shards' (counts summed, sequences maxed)."""
    from dataclasses import replace

    return replace(
        parts[0],
        count=sum(p.count for p in parts),
        tombstones=sum(p.tombstones for p in parts),
        bytes_on_disk=sum(p.bytes_on_disk for p in parts),
        last_seq=max(p.last_seq for p in parts),
        snapshot_seq=max(p.snapshot_seq for p in parts),
        index_ntotal=sum(p.index_ntotal for p in parts),
        dead_in_index=sum(p.dead_in_index for p in parts),
        trained=all(p.trained for p in parts),
        search_effort=max(p.search_effort for p in parts),
        measured_recall=min(p.measured_recall for p in parts),
        calibrated_count=sum(p.calibrated_count for p in parts),
    )


def merged_snapshots(parts: Sequence[Mapping[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for part in parts:
        for name, seq in part.items():
            merged[name] = max(merged.get(name, 0), seq)
    return merged
