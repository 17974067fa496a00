"""One Ray Serve deployment per encoder. It reuses EncoderCore (proto <-> Embedder checks) and the
Embedder of the standalone service; ``@serve.batch`` merges concurrent requests into one forward
pass (counted in model rows, like the standalone micro-batcher), one torch thread per replica.
Methods are named after the RPCs of ``synesthesia.v1.EncoderService``, so Ray's gRPC proxy serves
the same protos; ``Check`` answers ``grpc.health.v1.Health/Check`` through the proxy."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import torch
from grpc_health.v1 import health_pb2
from ray import serve
from synesthesia.modality import Modality
from synesthesia.models.embedder import Prepared
from synesthesia.services.encoder.config import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_WAIT_MS,
    EncoderConfig,
    load_embedder,
)
from synesthesia.services.encoder.core import EncoderCore, PreparedRequest
from synesthesia.services.encoder.warmup import warmup_item
from synesthesia.services.ray.status import CallGuard, grpc_status
from synesthesia.v1 import encoder_pb2

log = logging.getLogger(__name__)


def _rows(prepared: list[Prepared]) -> int:
    return sum(p.windows for p in prepared)


@serve.deployment
class EncoderDeployment:
    def __init__(
        self,
        modality: str,
        options: dict[str, Any],
        num_cpus: float = 1.0,
        tokens_file: str | None = None,
    ) -> None:
        self.guard = CallGuard("synesthesia.v1.EncoderService", tokens_file)
        config = EncoderConfig.model_validate(options)
        torch.set_num_threads(config.torch_threads or max(1, int(num_cpus)))
        m = Modality.parse(modality)
        embedder = load_embedder(config, m)
        self.core = EncoderCore(embedder, m, config.max_items_per_request, config.max_message_bytes)
        embedder.embed(m, [warmup_item(m)])  # before serving
        self._configure(config.max_batch_size, config.max_wait_ms)
        log.info(
            "%s encoder replica ready (%s, device %s, precision %s)",
            modality,
            self.core.model_id,
            config.device,
            config.precision,
        )

    def _configure(self, max_batch_size: int, max_wait_ms: float) -> None:
        self._encode_one.set_max_batch_size(max_batch_size)  # type: ignore[attr-defined]
        self._encode_one.set_batch_wait_timeout_s(max_wait_ms / 1000)  # type: ignore[attr-defined]

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """``user_config: {max_batch_size, max_wait_ms}`` changes batching live."""
        self._configure(
            int(user_config.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE)),
            float(user_config.get("max_wait_ms", DEFAULT_MAX_WAIT_MS)),
        )

    @serve.batch(
        max_batch_size=DEFAULT_MAX_BATCH_SIZE,
        batch_wait_timeout_s=DEFAULT_MAX_WAIT_MS / 1000,
        batch_size_fn=_rows,
    )
    async def _encode_one(self, prepared: list[Prepared]) -> list[np.ndarray]:
        vectors = await asyncio.to_thread(self.core.embedder.encode, self.core.modality, prepared)
        return list(vectors)

    async def _prepare(self, modality: int, items: list[encoder_pb2.Item]) -> PreparedRequest:
        return await asyncio.to_thread(self.core.prepare, modality, items)

    async def _vectors(self, req: PreparedRequest) -> np.ndarray:
        rows = await asyncio.gather(*(self._encode_one(p) for p in req.prepared))
        return np.stack(rows)

    async def Embed(
        self, request: encoder_pb2.EmbedRequest, grpc_context: Any = None
    ) -> encoder_pb2.EmbedResponse:
        with grpc_status(grpc_context, "Embed", self.guard):
            req = await self._prepare(request.modality, list(request.items))
            return self.core.embed_response(req, await self._vectors(req))

    async def EmbedStream(
        self,
        request_stream: AsyncIterator[encoder_pb2.EmbedStreamRequest],
        grpc_context: Any = None,
    ) -> AsyncIterator[encoder_pb2.EmbedStreamResponse]:
        with grpc_status(grpc_context, "EmbedStream", self.guard):
            async for chunk in request_stream:
                req = await self._prepare(chunk.modality, list(chunk.items))
                yield self.core.stream_response(req, await self._vectors(req))

    async def Info(
        self, request: encoder_pb2.InfoRequest, grpc_context: Any = None
    ) -> encoder_pb2.InfoResponse:
        with grpc_status(grpc_context, "Info", self.guard):
            return self.core.info()

    async def Check(
        self, request: health_pb2.HealthCheckRequest, grpc_context: Any = None
    ) -> health_pb2.HealthCheckResponse:
        """A replica receives calls only after its constructor (load + warm-up) has returned."""
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
