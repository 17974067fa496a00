"""The search service's ingress on Ray: methods named after the RPCs of
``synesthesia.v1.SearchService``. Items are routed to shard ``shard_of(id)``; a query is
scattered to every shard (each returns its own top-k) and the lists are merged by score (higher
is better for every metric). Media are embedded by the encoder deployments through handles.

Per-shard sequence numbers: ``last_seq`` and ``snapshot_seq`` report the maximum over shards."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from grpc_health.v1 import health_pb2
from ray import serve
from ray.serve.handle import DeploymentHandle
from synesthesia.errors import FailedPrecondition, InvalidInput, SynesthesiaError, Unavailable
from synesthesia.modality import Modality
from synesthesia.protoconv import modality_to_proto
from synesthesia.services.ray.app import DEPLOYMENT_NAMES
from synesthesia.services.ray.search_shard import shard_of, to_upsert_items
from synesthesia.services.ray.status import grpc_status
from synesthesia.services.search.core import ParsedUpsert
from synesthesia.v1 import encoder_pb2, search_pb2

log = logging.getLogger(__name__)

_QUERY_MODALITY = {"text": Modality.TEXT, "image": Modality.IMAGE, "audio": Modality.AUDIO}


def merge_top_k(lists: list[list[search_pb2.QueryHit]], k: int) -> list[search_pb2.QueryHit]:
    """Merges per-shard top-k lists (each sorted, higher score first) into the global top-k."""
    hits = [h for hits in lists for h in hits]
    hits.sort(key=lambda h: (-h.score, h.id))
    return hits[:k]


@serve.deployment
class SearchRouter:
    def __init__(self, shards: list[DeploymentHandle], encoder_apps: dict[str, str]) -> None:
        self.shards = shards
        self.encoder_apps = encoder_apps
        self._encoders: dict[Modality, DeploymentHandle] = {}

    def _encoder(self, modality: Modality) -> DeploymentHandle:
        if modality not in self._encoders:
            app = self.encoder_apps.get(modality.value)
            if not app:
                raise FailedPrecondition(f"no {modality.value} encoder application is configured")
            self._encoders[modality] = serve.get_deployment_handle(
                DEPLOYMENT_NAMES[modality.value], app_name=app
            )
        return self._encoders[modality]

    async def _embed(
        self, modality: Modality, contents: list[str | bytes], ids: list[str]
    ) -> tuple[np.ndarray, str]:
        items = [
            encoder_pb2.Item(text=c, id=i) if isinstance(c, str) else encoder_pb2.Item(data=c, id=i)
            for c, i in zip(contents, ids, strict=True)
        ]
        request = encoder_pb2.EmbedRequest(modality=modality_to_proto(modality), items=items)
        try:
            reply = await self._encoder(modality).Embed.remote(request)
        except SynesthesiaError:  # e.g. the encoder's INVALID_ARGUMENT naming the item
            raise
        except Exception as exc:
            raise Unavailable(f"{modality.value} encoder failed: {type(exc).__name__}") from exc
        vectors = np.asarray([e.values for e in reply.embeddings], dtype=np.float32)
        return vectors.reshape(len(items), reply.dim), reply.model_id

    async def _broadcast(self, method: str, *args: Any) -> list[Any]:
        return list(await asyncio.gather(*(getattr(s, method).remote(*args) for s in self.shards)))

    # -- collections ---------------------------------------------------------------------------
    async def CreateCollection(
        self, request: search_pb2.CreateCollectionRequest, grpc_context: Any = None
    ) -> search_pb2.CreateCollectionResponse:
        with grpc_status(grpc_context, "CreateCollection"):
            config = search_pb2.CollectionConfig()
            config.CopyFrom(request.config)
            if config.dim == 0:  # ask an encoder what it produces, like the standalone service
                info = await self._encoder(Modality.TEXT).Info.remote(encoder_pb2.InfoRequest())
                if config.model_id and config.model_id != info.model_id:
                    raise InvalidInput(
                        f"dim is 0 and model_id {config.model_id!r} differs from the encoders' "
                        f"{info.model_id!r}: give dim explicitly"
                    )
                config.dim, config.model_id = info.dim, info.model_id
            replies = await self._broadcast("create", config)
            return replies[0]

    async def ListCollections(
        self, request: search_pb2.ListCollectionsRequest, grpc_context: Any = None
    ) -> search_pb2.ListCollectionsResponse:
        with grpc_status(grpc_context, "ListCollections"):
            return await self.shards[0].list_collections.remote()

    async def DescribeCollection(
        self, request: search_pb2.DescribeCollectionRequest, grpc_context: Any = None
    ) -> search_pb2.DescribeCollectionResponse:
        with grpc_status(grpc_context, "DescribeCollection"):
            parts = await self._broadcast("describe", request.collection)
            return search_pb2.DescribeCollectionResponse(
                config=parts[0].config,
                count=sum(p.count for p in parts),
                tombstones=sum(p.tombstones for p in parts),
                bytes_on_disk=sum(p.bytes_on_disk for p in parts),
                last_seq=max(p.last_seq for p in parts),
                snapshot_seq=max(p.snapshot_seq for p in parts),
                trained=all(p.trained for p in parts),
            )

    async def DropCollection(
        self, request: search_pb2.DropCollectionRequest, grpc_context: Any = None
    ) -> search_pb2.DropCollectionResponse:
        with grpc_status(grpc_context, "DropCollection"):
            await self._broadcast("drop", request.collection)
            return search_pb2.DropCollectionResponse()

    async def Snapshot(
        self, request: search_pb2.SnapshotRequest, grpc_context: Any = None
    ) -> search_pb2.SnapshotResponse:
        with grpc_status(grpc_context, "Snapshot"):
            merged: dict[str, int] = {}
            for part in await self._broadcast("snapshot", request.collection):
                for name, seq in part.snapshot_seq.items():
                    merged[name] = max(merged.get(name, 0), seq)
            return search_pb2.SnapshotResponse(snapshot_seq=merged)

    # -- items ---------------------------------------------------------------------------------
    async def _embed_media(self, parsed: ParsedUpsert) -> dict[int, tuple[np.ndarray, str]]:
        by_modality: dict[Modality, list[int]] = defaultdict(list)
        for pos, m in enumerate(parsed.media):
            by_modality[m.modality].append(pos)
        out: dict[int, tuple[np.ndarray, str]] = {}

        async def one(modality: Modality, positions: list[int]) -> None:
            media = [parsed.media[p] for p in positions]
            vectors, model_id = await self._embed(
                modality, [m.content for m in media], [parsed.items[m.index].id for m in media]
            )
            for m, vec in zip(media, vectors, strict=True):
                out[m.index] = (vec, model_id)

        await asyncio.gather(*(one(m, p) for m, p in by_modality.items()))
        return out

    async def _upsert(self, request: search_pb2.UpsertRequest) -> search_pb2.UpsertResponse:
        parsed: ParsedUpsert = await self.shards[0].parse_upsert.remote(request)
        vectors = await self._embed_media(parsed) if parsed.media else {}
        items = to_upsert_items(parsed, vectors)
        await self.shards[0].check.remote(request.collection, items)  # nothing written yet
        by_shard: dict[int, list[Any]] = defaultdict(list)
        for item in items:
            by_shard[shard_of(item.id, len(self.shards))].append(item)
        seqs = await asyncio.gather(
            *(self.shards[s].write.remote(request.collection, part) for s, part in by_shard.items())
        )
        return search_pb2.UpsertResponse(ids=[it.id for it in parsed.items], last_seq=max(seqs))

    async def Upsert(
        self, request: search_pb2.UpsertRequest, grpc_context: Any = None
    ) -> search_pb2.UpsertResponse:
        with grpc_status(grpc_context, "Upsert"):
            return await self._upsert(request)

    async def UpsertStream(
        self,
        request_stream: AsyncIterator[search_pb2.UpsertStreamRequest],
        grpc_context: Any = None,
    ) -> AsyncIterator[search_pb2.UpsertStreamResponse]:
        with grpc_status(grpc_context, "UpsertStream"):
            async for chunk in request_stream:
                request = search_pb2.UpsertRequest(collection=chunk.collection, items=chunk.items)
                reply = await self._upsert(request)
                yield search_pb2.UpsertStreamResponse(ids=reply.ids, last_seq=reply.last_seq)

    def _split_ids(self, ids: list[str]) -> dict[int, list[str]]:
        parts: dict[int, list[str]] = defaultdict(list)
        for item_id in ids:
            parts[shard_of(item_id, len(self.shards))].append(item_id)
        return parts

    async def Delete(
        self, request: search_pb2.DeleteRequest, grpc_context: Any = None
    ) -> search_pb2.DeleteResponse:
        with grpc_status(grpc_context, "Delete"):
            if not request.ids:  # by filter (or invalid): every shard applies it
                replies = await self._broadcast("delete", request)
                return search_pb2.DeleteResponse(ids=[i for r in replies for i in r.ids])
            calls = []
            for s, ids in self._split_ids(list(request.ids)).items():
                part = search_pb2.DeleteRequest()
                part.CopyFrom(request)
                part.ClearField("ids")
                part.ids.extend(ids)
                calls.append(self.shards[s].delete.remote(part))
            deleted = {i for r in await asyncio.gather(*calls) for i in r.ids}
            return search_pb2.DeleteResponse(
                ids=[i for i in dict.fromkeys(request.ids) if i in deleted]
            )

    async def Get(
        self, request: search_pb2.GetRequest, grpc_context: Any = None
    ) -> search_pb2.GetResponse:
        with grpc_status(grpc_context, "Get"):
            if not request.ids:
                return await self.shards[0].get.remote(request)
            calls = [
                self.shards[s].get.remote(
                    search_pb2.GetRequest(collection=request.collection, ids=ids)
                )
                for s, ids in self._split_ids(list(request.ids)).items()
            ]
            found = {it.id: it for r in await asyncio.gather(*calls) for it in r.items}
            return search_pb2.GetResponse(
                items=[found[i] for i in dict.fromkeys(request.ids) if i in found]
            )

    async def Query(
        self, request: search_pb2.QueryRequest, grpc_context: Any = None
    ) -> search_pb2.QueryResponse:
        with grpc_status(grpc_context, "Query"):
            kind = request.WhichOneof("query")
            if kind is None:
                raise InvalidInput("query needs one of text, image, audio, vector or id")
            await self.shards[0].check_query.remote(request)
            exclude = ""
            model_id: str | None
            if kind == "id":
                owner = self.shards[shard_of(request.id, len(self.shards))]
                vector = await owner.vector_of.remote(request.collection, request.id)
                model_id, exclude = None, request.id
            elif kind == "vector":
                vector = np.asarray(request.vector.values, dtype=np.float32)
                model_id = request.vector.model_id or None
            else:
                vectors, model_id = await self._embed(
                    _QUERY_MODALITY[kind], [getattr(request, kind)], ["query"]
                )
                vector = vectors[0]
            scatter = search_pb2.QueryRequest()
            scatter.CopyFrom(request)
            if exclude:  # the item itself is left out, as in the standalone service
                scatter.k = request.k + 1
            lists = await self._broadcast("query", scatter, vector, model_id)
            hits = [[h for h in hits if h.id != exclude] for hits in lists]
            return search_pb2.QueryResponse(hits=merge_top_k(hits, request.k))

    async def Check(
        self, request: health_pb2.HealthCheckRequest, grpc_context: Any = None
    ) -> health_pb2.HealthCheckResponse:
        """The router serves once its shards have opened their data (Serve starts the ingress
        after the deployments it binds)."""
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
