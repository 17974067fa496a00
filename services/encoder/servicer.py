"""The standalone gRPC EncoderService: decoding in a small thread pool (a short text request is
tokenised on the event loop: cheaper than the hop), model calls through the micro-batcher,
deadlines honoured (a cancelled caller's items are dropped before the model)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from grpc import aio
from synesthesia.modality import Modality
from synesthesia.services.encoder.core import EncoderCore, PreparedRequest
from synesthesia.serving.batcher import MicroBatcher
from synesthesia.serving.metrics import BATCH_SIZE, ITEMS
from synesthesia.v1 import encoder_pb2, encoder_pb2_grpc

#: a text request this short (characters + bytes) is tokenised on the event loop (~0.1 ms)
INLINE_TEXT = 512


class EncoderServicer(encoder_pb2_grpc.EncoderServiceServicer):
    def __init__(
        self,
        core: EncoderCore,
        max_batch: int,
        max_wait_s: float,
        prepare_threads: int = 2,
        model_workers: int = 1,
    ):
        self.core = core
        label = core.modality.value
        self.batcher = MicroBatcher(
            lambda prepared: core.embedder.encode(core.modality, prepared),
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            on_batch=lambda n: BATCH_SIZE.labels(label).observe(n),
            workers=model_workers,
        )
        self._pool = ThreadPoolExecutor(max_workers=prepare_threads, thread_name_prefix="decode")
        self._inline_text = core.modality is Modality.TEXT

    async def _prepare(self, modality: int, items: list[encoder_pb2.Item]) -> PreparedRequest:
        if self._inline_text and sum(len(i.text) + len(i.data) for i in items) <= INLINE_TEXT:
            return self.core.prepare(modality, items)  # cheaper than the hop to a thread
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.core.prepare, modality, items)

    async def _vectors(self, req: PreparedRequest):  # type: ignore[no-untyped-def]
        vectors = await self.batcher.submit(req.prepared)
        ITEMS.labels(self.core.modality.value).inc(len(req.prepared))
        return vectors

    async def Embed(
        self, request: encoder_pb2.EmbedRequest, context: aio.ServicerContext
    ) -> encoder_pb2.EmbedResponse:
        req = await self._prepare(request.modality, list(request.items))
        return self.core.embed_response(req, await self._vectors(req))

    async def EmbedStream(
        self,
        request_iterator: AsyncIterator[encoder_pb2.EmbedStreamRequest],
        context: aio.ServicerContext,
    ) -> AsyncIterator[encoder_pb2.EmbedStreamResponse]:
        async for chunk in request_iterator:
            req = await self._prepare(chunk.modality, list(chunk.items))
            yield self.core.stream_response(req, await self._vectors(req))

    async def Info(
        self, request: encoder_pb2.InfoRequest, context: aio.ServicerContext
    ) -> encoder_pb2.InfoResponse:
        return self.core.info()

    async def close(self) -> None:
        await self.batcher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
