"""The search client's plain data in and out (collections, items, hits, labels) and their
protobuf conversions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synesthesia.client.inputs import Media, media_bytes
from synesthesia.errors import InvalidInput
from synesthesia.modality import Modality
from synesthesia.protoconv import (
    dict_to_struct,
    modality_from_proto,
    modality_to_proto,
    set_floats,
    struct_to_dict,
)
from synesthesia.v1 import search_pb2

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
    """``describe_collection``: the settings, the counters and the search effort in use."""

    config: Collection
    count: int
    tombstones: int
    bytes_on_disk: int
    last_seq: int
    snapshot_seq: int
    trained: bool
    search_effort: int = 0  # efSearch / nprobe of a query without its own recall_target
    measured_recall: float = 0.0  # recall@10 last measured at it (1 exact, 0 not yet)
    calibrated_count: int = 0  # live items when measured (0: never)


@dataclass(frozen=True)
class Item:
    """One item to upsert: its id, exactly one of ``vector``, ``text`` or ``data`` (a picture or
    sound, embedded by the service's encoders: bytes, a path, a PIL image or a numpy array — see
    ``synesthesia.client.inputs``), its modality (implied for ``text``), and JSON-like metadata.
    ``model_id`` names the model a ``vector`` came from (optional); ``sample_rate`` goes with a
    sound given as an array."""

    id: str
    vector: Sequence[float] | np.ndarray | None = None
    text: str | None = None
    data: Media | None = None
    modality: Modality | str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    model_id: str = ""
    sample_rate: int | None = None

    def to_proto(self) -> search_pb2.UpsertItem:
        given = [k for k in ("vector", "text", "data") if getattr(self, k) is not None]
        if len(given) != 1:
            raise InvalidInput(f"item {self.id!r}: give exactly one of vector, text or data")
        item = search_pb2.UpsertItem(id=self.id, metadata=dict_to_struct(self.metadata))
        if self.modality is not None:
            item.modality = modality_to_proto(self.modality)
        elif self.text is None:
            raise InvalidInput(f"item {self.id!r}: a vector or data needs its modality")
        if self.vector is not None:
            item.vector.model_id = self.model_id
            set_floats(item.vector, "values", self.vector)
        elif self.text is not None:
            item.text = self.text
        else:
            assert self.modality is not None
            item.data = media_bytes(self.data, self.modality, self.sample_rate)
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


def _query_request(
    collection: str,
    k: int,
    modalities: Iterable[Modality | str],
    filter: Mapping[str, Any] | None,
    model_id: str,
    given: dict[str, Any],
    sample_rate: int | None = None,
) -> search_pb2.QueryRequest:
    key, value = _one_of(given, "query by exactly one of text, image, audio, vector or id")
    value = _media_value(key, value, sample_rate)
    req = search_pb2.QueryRequest(collection=collection, k=k)
    req.modalities.extend(modality_to_proto(m) for m in modalities)
    if filter:
        req.filter.CopyFrom(dict_to_struct(filter))
    if key == "vector":  # filled in place (no message copied in)
        req.vector.SetInParent()
        set_floats(req.vector, "values", value)
        req.vector.model_id = model_id
    else:
        setattr(req, key, value)
    return req


def _one_of(given: dict[str, Any], message: str) -> tuple[str, Any]:
    named = {key: v for key, v in given.items() if v is not None}
    if len(named) != 1:
        raise InvalidInput(message)
    [(key, value)] = named.items()
    return key, value


def _media_value(key: str, value: Any, sample_rate: int | None) -> Any:
    return media_bytes(value, key, sample_rate) if key in ("image", "audio") else value


@dataclass(frozen=True)
class LabelScore:
    """``classify``: one label, its cosine ``score`` and softmax ``probability``."""

    label: str
    score: float
    probability: float


def _classify_request(
    given: dict[str, Any],
    labels: Sequence[str],
    template: str,
    temperature: float,
    sample_rate: int | None,
) -> search_pb2.ClassifyRequest:
    if isinstance(labels, str):
        raise InvalidInput("labels must be a list of strings, not one string")
    key, value = _one_of(given, "classify exactly one of text, image or audio")
    request = search_pb2.ClassifyRequest(
        labels=list(labels), template=template, temperature=temperature
    )
    setattr(request, key, _media_value(key, value, sample_rate))
    return request


def _labels(reply: search_pb2.ClassifyResponse) -> list[LabelScore]:
    return [LabelScore(x.label, float(x.score), float(x.probability)) for x in reply.labels]


def _hits(reply: search_pb2.QueryResponse) -> list[Hit]:
    return [
        Hit(
            h.id,
            h.score,
            modality_from_proto(h.modality),
            struct_to_dict(h.metadata) if h.HasField("metadata") else {},
        )
        for h in reply.hits
    ]


def _stored(reply: search_pb2.GetResponse) -> list[StoredItem]:
    return [
        StoredItem(
            i.id,
            np.asarray(i.vector, dtype=np.float32),
            modality_from_proto(i.modality),
            struct_to_dict(i.metadata),
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
        reply.search_effort,
        reply.measured_recall,
        reply.calibrated_count,
    )


def _chunks(values: Iterable[Any], size: int) -> Iterator[tuple[int, list[Any]]]:
    """(the number of the chunk's first value, up to ``size`` values), read lazily."""
    chunk: list[Any] = []
    start = 0
    for n, value in enumerate(values):
        chunk.append(value)
        if len(chunk) >= size:
            yield start, chunk
            chunk, start = [], n + 1
    if chunk:
        yield start, chunk


def _upsert_requests(
    collection: str, items: Iterable[Item], batch_size: int, message: Any = search_pb2.UpsertRequest
) -> Iterator[tuple[int, Any]]:
    """(the caller's number of the chunk's first item, the request); ``message``: UpsertRequest
    (unary calls) or UpsertStreamRequest (the stream)."""
    for start, chunk in _chunks((item.to_proto() for item in items), batch_size):
        yield start, message(collection=collection, items=chunk)


#: What a query of ``query_batch`` may say (``query``'s keyword arguments).
_QUERY_KEYS = frozenset(
    {"text", "image", "audio", "vector", "id", "k", "modalities", "filter", "model_id"}
    | {"sample_rate"}
)


def _query_batch_requests(
    collection: str, queries: Iterable[Mapping[str, Any]], defaults: dict[str, Any], size: int
) -> Iterator[tuple[int, search_pb2.QueryBatchRequest]]:
    """(the caller's number of the chunk's first query, a QueryBatchRequest of up to ``size``
    queries); each query's missing settings taken from ``defaults``."""

    def one(n: int, query: Mapping[str, Any]) -> search_pb2.QueryRequest:
        unknown = set(query) - _QUERY_KEYS
        if unknown:
            err = InvalidInput(f"query {n}: unknown keys {sorted(map(str, unknown))}")
            err.index = n
            raise err
        q = {**defaults, **query}
        given = {key: q.get(key) for key in ("text", "image", "audio", "vector", "id")}
        settings = (q["k"], q["modalities"], q["filter"], q["model_id"])
        try:
            return _query_request(collection, *settings, given, q["sample_rate"])
        except InvalidInput as exc:
            err = InvalidInput(f"query {n}: {exc.message}")
            err.index = n
            raise err from None

    requests = (one(n, query) for n, query in enumerate(queries))
    for start, chunk in _chunks(requests, size):
        yield start, search_pb2.QueryBatchRequest(queries=chunk)


def _batch_hits(reply: search_pb2.QueryBatchResponse) -> list[list[Hit]]:
    return [_hits(result) for result in reply.results]


def _config(name: str | Collection, settings: dict[str, Any]) -> search_pb2.CollectionConfig:
    return (name if isinstance(name, Collection) else Collection(name, **settings)).to_proto()
