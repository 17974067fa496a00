"""The standalone gRPC SearchService: a thin adapter from the RPCs to the one search flow
(flow.py), with the caller's deadline handed to the encoder calls."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from grpc import aio
from synesthesia.services.search.flow import SearchFlow
from synesthesia.v1 import search_pb2, search_pb2_grpc


def deadline_of(context: aio.ServicerContext) -> float | None:
    """The call's deadline as an absolute time.monotonic(), or None."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, flow: SearchFlow) -> None:
        self.flow = flow

    async def CreateCollection(
        self, request: search_pb2.CreateCollectionRequest, context: aio.ServicerContext
    ) -> search_pb2.CreateCollectionResponse:
        return await self.flow.create(request)

    async def ListCollections(
        self, request: search_pb2.ListCollectionsRequest, context: aio.ServicerContext
    ) -> search_pb2.ListCollectionsResponse:
        return await self.flow.list_collections()

    async def DescribeCollection(
        self, request: search_pb2.DescribeCollectionRequest, context: aio.ServicerContext
    ) -> search_pb2.DescribeCollectionResponse:
        return await self.flow.describe(request.collection)

    async def DropCollection(
        self, request: search_pb2.DropCollectionRequest, context: aio.ServicerContext
    ) -> search_pb2.DropCollectionResponse:
        return await self.flow.drop(request.collection)

    async def Upsert(
        self, request: search_pb2.UpsertRequest, context: aio.ServicerContext
    ) -> search_pb2.UpsertResponse:
        ids, seq = await self.flow.upsert(request.collection, request.items, deadline_of(context))
        return search_pb2.UpsertResponse(ids=ids, last_seq=seq)

    async def UpsertStream(
        self,
        request_iterator: AsyncIterator[search_pb2.UpsertStreamRequest],
        context: aio.ServicerContext,
    ) -> AsyncIterator[search_pb2.UpsertStreamResponse]:
        async for request in request_iterator:
            ids, seq = await self.flow.upsert(
                request.collection, request.items, deadline_of(context)
            )
            yield search_pb2.UpsertStreamResponse(ids=ids, last_seq=seq)

    async def Delete(
        self, request: search_pb2.DeleteRequest, context: aio.ServicerContext
    ) -> search_pb2.DeleteResponse:
        return await self.flow.delete(request)

    async def Get(
        self, request: search_pb2.GetRequest, context: aio.ServicerContext
    ) -> search_pb2.GetResponse:
        return await self.flow.get(request)

    async def Query(
        self, request: search_pb2.QueryRequest, context: aio.ServicerContext
    ) -> search_pb2.QueryResponse:
        return await self.flow.query(request, deadline_of(context))

    async def QueryBatch(
        self, request: search_pb2.QueryBatchRequest, context: aio.ServicerContext
    ) -> search_pb2.QueryBatchResponse:
        return await self.flow.query_batch(request, deadline_of(context))

    async def Snapshot(
        self, request: search_pb2.SnapshotRequest, context: aio.ServicerContext
    ) -> search_pb2.SnapshotResponse:
        return await self.flow.snapshot(request.collection)

    async def Classify(
        self, request: search_pb2.ClassifyRequest, context: aio.ServicerContext
    ) -> search_pb2.ClassifyResponse:
        return await self.flow.classify(request, deadline_of(context))
