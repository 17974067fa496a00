"""The standalone gRPC SearchService: index work in a thread pool, media embedded through the
encoder services before anything is written (a failed embedding writes nothing)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from grpc import aio
from synesthesia.errors import InvalidInput
from synesthesia.modality import Modality
from synesthesia.services.search.core import ParsedUpsert, SearchCore
from synesthesia.services.search.encoders import EncoderGateway
from synesthesia.v1 import search_pb2, search_pb2_grpc

T = TypeVar("T")


def _deadline(context: aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, core: SearchCore, encoders: EncoderGateway, threads: int = 4) -> None:
        self.core = core
        self.encoders = encoders
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="index")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def CreateCollection(
        self, request: search_pb2.CreateCollectionRequest, context: aio.ServicerContext
    ) -> search_pb2.CreateCollectionResponse:
        config = search_pb2.CollectionConfig()
        config.CopyFrom(request.config)
        if config.dim == 0:  # ask the encoders what they produce
            info = await self.encoders.info()
            if config.model_id and config.model_id != info.model_id:
                raise InvalidInput(
                    f"dim is 0 and model_id {config.model_id!r} differs from the encoders' "
                    f"{info.model_id!r}: give dim explicitly"
                )
            config.dim, config.model_id = info.dim, info.model_id
        return await self._run(self.core.create, config)

    async def ListCollections(
        self, request: search_pb2.ListCollectionsRequest, context: aio.ServicerContext
    ) -> search_pb2.ListCollectionsResponse:
        return await self._run(self.core.list)

    async def DescribeCollection(
        self, request: search_pb2.DescribeCollectionRequest, context: aio.ServicerContext
    ) -> search_pb2.DescribeCollectionResponse:
        return await self._run(self.core.describe, request.collection)

    async def DropCollection(
        self, request: search_pb2.DropCollectionRequest, context: aio.ServicerContext
    ) -> search_pb2.DropCollectionResponse:
        return await self._run(self.core.drop, request.collection)

    async def _embed_media(
        self, parsed: ParsedUpsert, deadline: float | None
    ) -> dict[int, tuple[np.ndarray, str]]:
        by_modality: dict[Modality, list[int]] = {}
        for pos, m in enumerate(parsed.media):
            by_modality.setdefault(m.modality, []).append(pos)
        out: dict[int, tuple[np.ndarray, str]] = {}

        async def one(modality: Modality, positions: list[int]) -> None:
            media = [parsed.media[p] for p in positions]
            batch = await self.encoders.embed(
                modality,
                [m.content for m in media],
                [parsed.items[m.index].id for m in media],
                deadline,
            )
            for m, vec in zip(media, batch.vectors, strict=True):
                out[m.index] = (vec, batch.model_id)

        await asyncio.gather(*(one(m, p) for m, p in by_modality.items()))
        return out

    async def _upsert(
        self, request: search_pb2.UpsertRequest, context: aio.ServicerContext
    ) -> search_pb2.UpsertResponse:
        parsed = await self._run(self.core.parse_upsert, request)
        vectors = await self._embed_media(parsed, _deadline(context)) if parsed.media else {}
        return await self._run(self.core.commit_upsert, parsed, vectors)

    async def Upsert(
        self, request: search_pb2.UpsertRequest, context: aio.ServicerContext
    ) -> search_pb2.UpsertResponse:
        return await self._upsert(request, context)

    async def UpsertStream(
        self,
        request_iterator: AsyncIterator[search_pb2.UpsertStreamRequest],
        context: aio.ServicerContext,
    ) -> AsyncIterator[search_pb2.UpsertStreamResponse]:
        async for chunk in request_iterator:
            request = search_pb2.UpsertRequest(collection=chunk.collection, items=chunk.items)
            reply = await self._upsert(request, context)
            yield search_pb2.UpsertStreamResponse(ids=reply.ids, last_seq=reply.last_seq)

    async def Delete(
        self, request: search_pb2.DeleteRequest, context: aio.ServicerContext
    ) -> search_pb2.DeleteResponse:
        return await self._run(self.core.delete, request)

    async def Get(
        self, request: search_pb2.GetRequest, context: aio.ServicerContext
    ) -> search_pb2.GetResponse:
        return await self._run(self.core.get, request)

    async def Query(
        self, request: search_pb2.QueryRequest, context: aio.ServicerContext
    ) -> search_pb2.QueryResponse:
        kind = request.WhichOneof("query")
        if kind is None:
            raise InvalidInput("query needs one of text, image, audio, vector or id")
        await self._run(self.core.manager.collection, request.collection)  # NotFound first
        self.core.query_filter(request)  # a malformed filter fails before any embedding
        if kind == "id":
            return await self._run(self.core.query_id, request)
        if kind == "vector":
            return await self._run(
                self.core.query_vector,
                request,
                request.vector.values,
                request.vector.model_id or None,
            )
        modality = {"text": Modality.TEXT, "image": Modality.IMAGE, "audio": Modality.AUDIO}[kind]
        content = getattr(request, kind)
        batch = await self.encoders.embed(modality, [content], ["query"], _deadline(context))
        return await self._run(self.core.query_vector, request, batch.vectors[0], batch.model_id)

    async def Snapshot(
        self, request: search_pb2.SnapshotRequest, context: aio.ServicerContext
    ) -> search_pb2.SnapshotResponse:
        return await self._run(self.core.snapshot, request.collection)

    async def close(self) -> None:
        await self.encoders.close()
        self._pool.shutdown(wait=True)
