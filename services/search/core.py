"""The search servicer core: protobuf <-> the index library, with no gRPC context, shared by the
standalone servicer and the Ray shard deployments. All methods are synchronous (call them from
a thread pool); embedding media is the caller's job (see encoders.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf import json_format, struct_pb2
from synesthesia.errors import FailedPrecondition, InvalidInput, item_error
from synesthesia.index import CollectionSpec, Hit, IndexKind, IndexManager, Metric, UpsertItem
from synesthesia.modality import Modality
from synesthesia.protoconv import modality_from_proto, modality_to_proto
from synesthesia.v1 import search_pb2

_METRIC = {
    search_pb2.METRIC_UNSPECIFIED: Metric.IP,
    search_pb2.METRIC_IP: Metric.IP,
    search_pb2.METRIC_L2: Metric.L2,
}
_KIND = {
    search_pb2.INDEX_KIND_UNSPECIFIED: IndexKind.FLAT,
    search_pb2.INDEX_KIND_FLAT: IndexKind.FLAT,
    search_pb2.INDEX_KIND_HNSW: IndexKind.HNSW,
    search_pb2.INDEX_KIND_IVF_PQ: IndexKind.IVF_PQ,
}
_METRIC_OUT = {Metric.IP: search_pb2.METRIC_IP, Metric.L2: search_pb2.METRIC_L2}
_KIND_OUT = {
    IndexKind.FLAT: search_pb2.INDEX_KIND_FLAT,
    IndexKind.HNSW: search_pb2.INDEX_KIND_HNSW,
    IndexKind.IVF_PQ: search_pb2.INDEX_KIND_IVF_PQ,
}


def struct_to_dict(s: struct_pb2.Struct, what: str = "filter") -> dict[str, Any]:
    try:
        return json_format.MessageToDict(s) if s.fields else {}
    except ValueError:  # NaN or +-Infinity: JSON has no such number (was INTERNAL)
        raise InvalidInput(f"{what} contains NaN or Infinity; numbers must be finite") from None


def dict_to_struct(d: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(d)
    return out


def config_to_proto(spec: CollectionSpec) -> search_pb2.CollectionConfig:
    return search_pb2.CollectionConfig(
        name=spec.name,
        dim=spec.dim,
        metric=_METRIC_OUT[spec.metric],
        index_kind=_KIND_OUT[spec.kind],
        index_params=dict(spec.params),
        model_id=spec.model_id,
    )


def hit_to_proto(hit: Hit) -> search_pb2.QueryHit:
    return search_pb2.QueryHit(
        id=hit.id,
        score=hit.score,
        modality=modality_to_proto(hit.modality),
        metadata=dict_to_struct(dict(hit.metadata)),
    )


@dataclass
class MediaItem:
    """An item whose vector must come from an encoder first."""

    index: int
    modality: Modality
    content: str | bytes


@dataclass
class ParsedUpsert:
    collection: str
    items: list[search_pb2.UpsertItem]
    media: list[MediaItem]


class SearchCore:
    def __init__(self, manager: IndexManager, max_items_per_request: int) -> None:
        self.manager = manager
        self.max_items = max_items_per_request

    # -- collections -------------------------------------------------------------------------
    def create(self, config: search_pb2.CollectionConfig) -> search_pb2.CreateCollectionResponse:
        if config.metric not in _METRIC:
            raise InvalidInput(f"unknown metric {config.metric}")
        if config.index_kind not in _KIND:
            raise InvalidInput(f"unknown index kind {config.index_kind}")
        spec = self.manager.create_collection(
            config.name,
            int(config.dim),
            _METRIC[config.metric],
            _KIND[config.index_kind],
            dict(config.index_params),
            config.model_id,
        )
        return search_pb2.CreateCollectionResponse(config=config_to_proto(spec))

    def list(self) -> search_pb2.ListCollectionsResponse:
        specs = sorted(self.manager.list_collections(), key=lambda s: s.name)
        return search_pb2.ListCollectionsResponse(collections=[config_to_proto(s) for s in specs])

    def describe(self, name: str) -> search_pb2.DescribeCollectionResponse:
        info = self.manager.describe(name)
        return search_pb2.DescribeCollectionResponse(
            config=config_to_proto(info.spec),
            count=info.count,
            tombstones=info.tombstones,
            bytes_on_disk=info.bytes_on_disk,
            last_seq=info.last_seq,
            snapshot_seq=info.snapshot_seq,
            trained=info.trained,
        )

    def drop(self, name: str) -> search_pb2.DropCollectionResponse:
        self.manager.drop_collection(name)
        return search_pb2.DropCollectionResponse()

    def snapshot(self, name: str) -> search_pb2.SnapshotResponse:
        seqs = (
            {name: self.manager.collection(name).snapshot()}
            if name
            else (self.manager.snapshot_all(only_dirty=False))
        )
        return search_pb2.SnapshotResponse(snapshot_seq=seqs)

    # -- items ---------------------------------------------------------------------------------
    def parse_upsert(self, request: search_pb2.UpsertRequest) -> ParsedUpsert:
        """Checks the request shape and lists the items that need an encoder."""
        coll = self.manager.collection(request.collection)  # NotFound early, before embedding
        items = list(request.items)
        if not items:
            raise InvalidInput("upsert has no items")
        if len(items) > self.max_items:
            raise InvalidInput(f"upsert has {len(items)} items; the limit is {self.max_items}")
        media = []
        for i, it in enumerate(items):
            kind = it.WhichOneof("content")
            if kind is None:
                raise item_error(i, it.id, "item has no content (set vector, text or data)")
            if kind == "text":
                if it.modality not in (0, modality_to_proto(Modality.TEXT)):
                    raise item_error(i, it.id, "text content must have modality MODALITY_TEXT")
                media.append(MediaItem(i, Modality.TEXT, it.text))
                continue
            try:
                modality = modality_from_proto(it.modality)
            except InvalidInput as exc:
                raise item_error(i, it.id, str(exc)) from None
            if kind == "data":  # bytes of any modality (UTF-8 for text)
                media.append(MediaItem(i, modality, it.data))
        del coll
        return ParsedUpsert(request.collection, items, media)

    def commit_upsert(
        self, parsed: ParsedUpsert, vectors: dict[int, tuple[np.ndarray, str]]
    ) -> search_pb2.UpsertResponse:
        """``vectors``: item index -> (vector, model id) for the media items."""
        out: list[UpsertItem] = []
        for i, it in enumerate(parsed.items):
            if i in vectors:
                vec, model_id = vectors[i]
                modality = (
                    Modality.TEXT
                    if it.WhichOneof("content") == "text"
                    else modality_from_proto(it.modality)
                )
                out.append(UpsertItem(it.id, vec, modality, self._metadata(i, it), model_id))
            else:
                out.append(
                    UpsertItem(
                        it.id,
                        np.asarray(it.vector.values, dtype=np.float32),
                        modality_from_proto(it.modality),
                        self._metadata(i, it),
                        it.vector.model_id or None,
                    )
                )
        result = self.manager.collection(parsed.collection).upsert(out)
        return search_pb2.UpsertResponse(
            ids=[it.id for it in parsed.items], last_seq=result.last_seq
        )

    @staticmethod
    def _metadata(index: int, item: search_pb2.UpsertItem) -> dict[str, Any]:
        try:
            meta = struct_to_dict(item.metadata, "metadata")
        except InvalidInput as exc:
            raise item_error(index, item.id, str(exc)) from None
        for key, value in meta.items():
            if isinstance(value, dict | list) or value is None:
                raise item_error(
                    index, item.id, f"metadata {key!r} must be a string, number or bool"
                )
        return meta

    def delete(self, request: search_pb2.DeleteRequest) -> search_pb2.DeleteResponse:
        coll = self.manager.collection(request.collection)
        has_filter = bool(request.filter.fields)
        if request.ids and has_filter:
            raise InvalidInput("delete by ids or by filter, not both")
        if not request.ids and not has_filter:
            raise InvalidInput(
                "delete needs ids or a filter (an empty filter is refused on purpose)"
            )
        deleted = (
            coll.delete(list(request.ids))
            if request.ids
            else coll.delete_where(struct_to_dict(request.filter))
        )
        return search_pb2.DeleteResponse(ids=deleted)

    def get(self, request: search_pb2.GetRequest) -> search_pb2.GetResponse:
        items = self.manager.collection(request.collection).get(list(request.ids))
        return search_pb2.GetResponse(
            items=[
                search_pb2.StoredItem(
                    id=s.id,
                    vector=s.vector.tolist(),
                    modality=modality_to_proto(s.modality),
                    metadata=dict_to_struct(dict(s.metadata)),
                )
                for s in items
            ]
        )

    # -- queries -------------------------------------------------------------------------------
    def query_filter(self, request: search_pb2.QueryRequest) -> dict[str, Any]:
        flt = struct_to_dict(request.filter)
        if request.modalities:
            if "modality" in flt:
                raise InvalidInput(
                    "give the modality restriction in `modalities` or in the filter, not both"
                )
            flt["modality"] = [modality_from_proto(m).value for m in request.modalities]
        return flt

    def query_vector(
        self,
        request: search_pb2.QueryRequest,
        vector: Sequence[float] | np.ndarray,
        model_id: str | None,
    ) -> search_pb2.QueryResponse:
        coll = self.manager.collection(request.collection)
        if model_id and coll.spec.model_id and model_id != coll.spec.model_id:
            raise FailedPrecondition(
                f"collection {coll.spec.name!r} holds vectors of model {coll.spec.model_id!r}; "
                f"the query vector comes from {model_id!r}"
            )
        hits = coll.query(
            np.asarray(vector, dtype=np.float32), request.k, self.query_filter(request)
        )
        return search_pb2.QueryResponse(hits=[hit_to_proto(h) for h in hits])

    def query_id(self, request: search_pb2.QueryRequest) -> search_pb2.QueryResponse:
        coll = self.manager.collection(request.collection)
        hits = coll.query_by_id(request.id, request.k, self.query_filter(request))
        return search_pb2.QueryResponse(hits=[hit_to_proto(h) for h in hits])
