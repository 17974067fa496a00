"""The search service's ingress on Ray: the one search flow (services/search/flow.py) over
``ShardedStore`` (items routed to shard ``shard_of(id)``; a query scattered to every shard and
the per-shard top-k lists merged by score) and ``RayEncoders`` (the encoder deployments, through
handles). Methods are named after the RPCs of ``synesthesia.v1.SearchService``.

An Upsert's items cross the object store once, each to the shard that owns it; per-shard sequence
numbers: ``last_seq`` and ``snapshot_seq`` report the maximum over shards."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
from grpc_health.v1 import health_pb2
from ray import serve
from ray.serve.handle import DeploymentHandle
from synesthesia.errors import FailedPrecondition, SynesthesiaError, Unavailable
from synesthesia.index.types import CollectionInfo, CollectionSpec, Hit, StoredItem, UpsertItem
from synesthesia.modality import Modality
from synesthesia.services.ray.app import DEPLOYMENT_NAMES
from synesthesia.services.ray.search_shard import shard_of
from synesthesia.services.ray.status import CallGuard, grpc_status
from synesthesia.services.search.encoders import embed_request, encoded_batch
from synesthesia.services.search.flow import (
    EncodedBatch,
    EncoderInfo,
    SearchFlow,
    merge_top_k,
    merged_snapshots,
    spec_info,
)
from synesthesia.v1 import encoder_pb2, search_pb2


class ShardedStore:
    """The Store interface over N shard deployments. A shard that is down (its replica died and
    Serve is restarting it) makes every call that needs it fail with UNAVAILABLE naming the
    shard, or wait for the restarted replica (Serve holds calls for a deployment with no live
    replica) up to the caller's deadline or ``timeout_s``: a query never answers from a subset
    of the shards, and a write is acknowledged only when every owning shard has committed it."""

    def __init__(self, shards: list[DeploymentHandle], timeout_s: float = 30.0) -> None:
        self.shards = shards
        self.timeout_s = timeout_s

    async def _call(self, shard: int, method: str, *args: Any) -> Any:
        call = getattr(self.shards[shard], method).remote(*args)
        try:
            return await asyncio.wait_for(call, self.timeout_s)
        except SynesthesiaError:  # a domain error raised in the shard (NotFound, InvalidInput…)
            raise
        except TimeoutError:
            raise Unavailable(
                f"search shard {shard} of {len(self.shards)} did not answer within "
                f"{self.timeout_s:g} s; retry shortly"
            ) from None
        except Exception as exc:
            raise Unavailable(
                f"search shard {shard} of {len(self.shards)} is unavailable "
                f"({type(exc).__name__}); retry shortly"
            ) from exc

    async def _all(self, method: str, *args: Any) -> list[Any]:
        return list(
            await asyncio.gather(*(self._call(i, method, *args) for i in range(len(self.shards))))
        )

    def _split(self, ids: Sequence[str]) -> dict[int, list[str]]:
        parts: dict[int, list[str]] = defaultdict(list)
        for item_id in dict.fromkeys(ids):
            parts[shard_of(item_id, len(self.shards))].append(item_id)
        return parts

    async def create(self, spec: CollectionSpec) -> CollectionSpec:
        return (await self._all("create", spec))[0]

    async def specs(self) -> list[CollectionSpec]:
        return await self._call(0, "specs")

    async def spec(self, collection: str) -> CollectionSpec:
        return await self._call(0, "spec", collection)

    async def describe(self, collection: str) -> CollectionInfo:
        return spec_info(await self._all("describe", collection))

    async def drop(self, collection: str) -> None:
        await self._all("drop", collection)

    async def snapshot(self, collection: str) -> dict[str, int]:
        return merged_snapshots(await self._all("snapshot", collection))

    async def write(self, collection: str, items: list[UpsertItem]) -> int:
        parts: dict[int, list[UpsertItem]] = defaultdict(list)
        for item in items:
            parts[shard_of(item.id, len(self.shards))].append(item)
        seqs = await asyncio.gather(
            *(self._call(s, "write", collection, part) for s, part in parts.items())
        )
        return max(seqs)

    async def delete(self, collection: str, ids: list[str]) -> list[str]:
        calls = [self._call(s, "delete", collection, part) for s, part in self._split(ids).items()]
        deleted = {i for part in await asyncio.gather(*calls) for i in part}
        return [i for i in dict.fromkeys(ids) if i in deleted]

    async def delete_where(self, collection: str, flt: dict[str, Any]) -> list[str]:
        return [i for part in await self._all("delete_where", collection, flt) for i in part]

    async def get(self, collection: str, ids: list[str]) -> list[StoredItem]:
        if not ids:
            await self.spec(collection)  # NotFound for an unknown collection, as standalone
            return []
        calls = [self._call(s, "get", collection, part) for s, part in self._split(ids).items()]
        found = {it.id: it for part in await asyncio.gather(*calls) for it in part}
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    async def query(
        self, collection: str, vector: np.ndarray, k: int, flt: dict[str, Any], recall: float | None
    ) -> list[Hit]:
        return merge_top_k(await self._all("query", collection, vector, k, flt, recall), k)

    async def query_batch(
        self,
        collection: str,
        vectors: np.ndarray,
        k: int,
        flt: dict[str, Any],
        recall: float | None,
    ) -> list[list[Hit]]:
        per_shard = await self._all("query_batch", collection, vectors, k, flt, recall)
        return [merge_top_k(lists, k) for lists in zip(*per_shard, strict=True)]

    async def query_by_id(
        self, collection: str, item_id: str, k: int, flt: dict[str, Any], recall: float | None
    ) -> list[Hit]:
        owner = shard_of(item_id, len(self.shards))
        vector = await self._call(owner, "vector_of", collection, item_id)
        lists = await self._all("query", collection, vector, k + 1, flt, recall)
        # the item itself is left out, as in the standalone service
        return merge_top_k([[h for h in hits if h.id != item_id] for hits in lists], k)


class RayEncoders:
    """The Encoders interface over the encoder deployments (one Ray Serve application each)."""

    def __init__(self, encoder_apps: dict[str, str]) -> None:
        self.encoder_apps = encoder_apps
        self._handles: dict[Modality, DeploymentHandle] = {}

    def _handle(self, modality: Modality) -> DeploymentHandle:
        if modality not in self._handles:
            app = self.encoder_apps.get(modality.value)
            if not app:
                raise FailedPrecondition(f"no {modality.value} encoder application is configured")
            self._handles[modality] = serve.get_deployment_handle(
                DEPLOYMENT_NAMES[modality.value], app_name=app
            )
        return self._handles[modality]

    async def embed(
        self,
        modality: Modality,
        contents: Sequence[str | bytes],
        ids: Sequence[str],
        deadline: float | None,
    ) -> EncodedBatch:
        request = embed_request(modality, contents, ids)
        try:
            reply = await self._handle(modality).Embed.remote(request)
        except SynesthesiaError:  # e.g. the encoder's INVALID_ARGUMENT naming the item
            raise
        except Exception as exc:
            raise Unavailable(f"{modality.value} encoder failed: {type(exc).__name__}") from exc
        return encoded_batch(reply, len(contents))

    async def info(self) -> EncoderInfo:
        configured = [m for m in Modality if self.encoder_apps.get(m.value)]
        if not configured:
            raise FailedPrecondition("no encoder application is configured")
        reply = await self._handle(configured[0]).Info.remote(encoder_pb2.InfoRequest())
        return EncoderInfo(reply.model_id, reply.dim)


@serve.deployment
class SearchRouter:
    def __init__(
        self,
        shards: list[DeploymentHandle],
        encoder_apps: dict[str, str],
        max_items: int,
        tokens_file: str | None = None,
        shard_timeout_s: float = 30.0,
    ) -> None:
        self.guard = CallGuard("synesthesia.v1.SearchService", tokens_file)
        store = ShardedStore(shards, shard_timeout_s)
        self.flow = SearchFlow(store, RayEncoders(encoder_apps), max_items)

    async def CreateCollection(
        self, request: search_pb2.CreateCollectionRequest, grpc_context: Any = None
    ) -> search_pb2.CreateCollectionResponse:
        with grpc_status(grpc_context, "CreateCollection", self.guard):
            return await self.flow.create(request)

    async def ListCollections(
        self, request: search_pb2.ListCollectionsRequest, grpc_context: Any = None
    ) -> search_pb2.ListCollectionsResponse:
        with grpc_status(grpc_context, "ListCollections", self.guard):
            return await self.flow.list_collections()

    async def DescribeCollection(
        self, request: search_pb2.DescribeCollectionRequest, grpc_context: Any = None
    ) -> search_pb2.DescribeCollectionResponse:
        with grpc_status(grpc_context, "DescribeCollection", self.guard):
            return await self.flow.describe(request.collection)

    async def DropCollection(
        self, request: search_pb2.DropCollectionRequest, grpc_context: Any = None
    ) -> search_pb2.DropCollectionResponse:
        with grpc_status(grpc_context, "DropCollection", self.guard):
            return await self.flow.drop(request.collection)

    async def Snapshot(
        self, request: search_pb2.SnapshotRequest, grpc_context: Any = None
    ) -> search_pb2.SnapshotResponse:
        with grpc_status(grpc_context, "Snapshot", self.guard):
            return await self.flow.snapshot(request.collection)

    async def Upsert(
        self, request: search_pb2.UpsertRequest, grpc_context: Any = None
    ) -> search_pb2.UpsertResponse:
        with grpc_status(grpc_context, "Upsert", self.guard):
            ids, seq = await self.flow.upsert(request.collection, request.items, None)
            return search_pb2.UpsertResponse(ids=ids, last_seq=seq)

    async def UpsertStream(
        self,
        request_stream: AsyncIterator[search_pb2.UpsertStreamRequest],
        grpc_context: Any = None,
    ) -> AsyncIterator[search_pb2.UpsertStreamResponse]:
        with grpc_status(grpc_context, "UpsertStream", self.guard):
            async for request in request_stream:
                ids, seq = await self.flow.upsert(request.collection, request.items, None)
                yield search_pb2.UpsertStreamResponse(ids=ids, last_seq=seq)

    async def Delete(
        self, request: search_pb2.DeleteRequest, grpc_context: Any = None
    ) -> search_pb2.DeleteResponse:
        with grpc_status(grpc_context, "Delete", self.guard):
            return await self.flow.delete(request)

    async def Get(
        self, request: search_pb2.GetRequest, grpc_context: Any = None
    ) -> search_pb2.GetResponse:
        with grpc_status(grpc_context, "Get", self.guard):
            return await self.flow.get(request)

    async def Query(
        self, request: search_pb2.QueryRequest, grpc_context: Any = None
    ) -> search_pb2.QueryResponse:
        with grpc_status(grpc_context, "Query", self.guard):
            return await self.flow.query(request, None)

    async def QueryBatch(
        self, request: search_pb2.QueryBatchRequest, grpc_context: Any = None
    ) -> search_pb2.QueryBatchResponse:
        with grpc_status(grpc_context, "QueryBatch", self.guard):
            return await self.flow.query_batch(request, None)

    async def Classify(
        self, request: search_pb2.ClassifyRequest, grpc_context: Any = None
    ) -> search_pb2.ClassifyResponse:
        with grpc_status(grpc_context, "Classify", self.guard):
            return await self.flow.classify(request, None)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, grpc_context: Any = None
    ) -> health_pb2.HealthCheckResponse:
        """The router serves once its shards have opened their data (Serve starts the ingress
        after the deployments it binds)."""
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
