"""The standalone search service's ``Encoders`` (see flow.py): async gRPC clients of the encoder
services with deadlines and retries, mapping the encoders' failures to domain errors
(UNAVAILABLE stays UNAVAILABLE, an encoder's INVALID_ARGUMENT stays INVALID_ARGUMENT with its
message)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import grpc
import numpy as np
from grpc import aio
from synesthesia.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidInput,
    SynesthesiaError,
    Unavailable,
)
from synesthesia.modality import Modality
from synesthesia.protoconv import modality_to_proto
from synesthesia.services.search.flow import EncodedBatch, EncoderInfo
from synesthesia.serving.security import auth_metadata
from synesthesia.serving.server import channel_options
from synesthesia.v1 import encoder_pb2, encoder_pb2_grpc

log = logging.getLogger(__name__)


class EncoderGateway:
    def __init__(
        self,
        targets: dict[Modality, str],
        timeout_s: float,
        retries: int,
        max_message_bytes: int,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
    ) -> None:
        """``credentials``: TLS towards the encoders (None: plaintext); ``token``: the bearer
        token this service presents to them."""
        self.targets = {m: t for m, t in targets.items() if t}
        self.timeout_s = timeout_s
        self.retries = retries
        self.metadata = auth_metadata(token)
        # Short reconnect backoff: an encoder that comes back is used again within a second.
        options = [
            *channel_options(max_message_bytes),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        self._channels = {
            m: aio.insecure_channel(t, options=options)
            if credentials is None
            else aio.secure_channel(t, credentials, options=options)
            for m, t in self.targets.items()
        }
        self._stubs = {m: encoder_pb2_grpc.EncoderServiceStub(c) for m, c in self._channels.items()}

    async def embed(
        self,
        modality: Modality,
        contents: Sequence[str | bytes],
        ids: Sequence[str],
        deadline: float | None,
    ) -> EncodedBatch:
        """``deadline``: absolute time.monotonic() by which the caller needs the answer."""
        stub = self._stubs.get(modality)
        if stub is None:
            raise FailedPrecondition(
                f"no {modality.value} encoder is configured for this search service "
                f"(set SYNESTHESIA_{modality.value.upper()}_ENCODER)"
            )
        request = embed_request(modality, contents, ids)
        attempt = 0
        while True:
            timeout = self.timeout_s
            if deadline is not None:
                timeout = min(timeout, deadline - time.monotonic())
                if timeout <= 0:
                    raise DeadlineExceeded(
                        f"deadline passed before the {modality.value} encoder answered"
                    )
            try:
                reply = await stub.Embed(request, timeout=timeout, metadata=self.metadata)
                break
            except aio.AioRpcError as err:
                mapped = self._map(modality, err)
                if isinstance(mapped, Unavailable) and attempt < self.retries:
                    attempt += 1
                    await asyncio.sleep(min(0.2 * attempt, 1.0))
                    continue
                raise mapped from None
        return encoded_batch(reply, len(contents))

    def _map(self, modality: Modality, err: aio.AioRpcError) -> SynesthesiaError:
        where = f"{modality.value} encoder at {self.targets[modality]}"
        code = err.code()
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return InvalidInput(err.details() or "rejected by the encoder")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(f"{where} did not answer in time")
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            return Unavailable(f"{where} is unavailable: {err.details()}")
        log.warning("%s failed: %s %s", where, code, err.details())
        return Unavailable(f"{where} failed ({code.name}): {err.details()}")

    async def info(self) -> EncoderInfo:
        """Info of the first configured encoder (text, image, audio order)."""
        if not self._stubs:
            raise FailedPrecondition("no encoder service is configured")
        modality, stub = next(iter(self._stubs.items()))
        try:
            reply = await stub.Info(
                encoder_pb2.InfoRequest(), timeout=self.timeout_s, metadata=self.metadata
            )
        except aio.AioRpcError as err:
            raise self._map(modality, err) from None
        return EncoderInfo(reply.model_id, reply.dim)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()


def embed_request(
    modality: Modality, contents: Sequence[str | bytes], ids: Sequence[str]
) -> encoder_pb2.EmbedRequest:
    """The EmbedRequest for media the search service must embed (text as text, the rest as
    bytes), shared by the gRPC gateway and the Ray handles."""
    items = [
        encoder_pb2.Item(text=c, id=i) if isinstance(c, str) else encoder_pb2.Item(data=c, id=i)
        for c, i in zip(contents, ids, strict=True)
    ]
    return encoder_pb2.EmbedRequest(modality=modality_to_proto(modality), items=items)


def encoded_batch(reply: encoder_pb2.EmbedResponse, n: int) -> EncodedBatch:
    vectors = np.asarray([e.values for e in reply.embeddings], dtype=np.float32)
    return EncodedBatch(vectors.reshape(n, reply.dim), reply.model_id)
