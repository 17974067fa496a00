"""Python clients for the encoder services, sync and asyncio. Large inputs are split into
requests of ``batch_size`` items; vectors come back as one float32 array in input order.

    from synesthesia.client import EncoderClient
    with EncoderClient("localhost:50053") as audio:
        vectors = audio.embed("audio", [open("bark.wav", "rb").read()])
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from synesthesia.modality import Modality
from synesthesia.protoconv import modality_to_proto
from synesthesia.serving.server import DEFAULT_MAX_MESSAGE_BYTES, channel_options
from synesthesia.v1 import encoder_pb2, encoder_pb2_grpc

Content = str | bytes


def _items(
    modality: Modality, contents: Sequence[Content], ids: Sequence[str] | None
) -> list[encoder_pb2.Item]:
    out = []
    for i, c in enumerate(contents):
        item_id = ids[i] if ids else ""
        if isinstance(c, str) and modality is Modality.TEXT:
            out.append(encoder_pb2.Item(text=c, id=item_id))
        elif isinstance(c, bytes | bytearray):
            out.append(encoder_pb2.Item(data=bytes(c), id=item_id))
        else:
            raise TypeError(f"item {i}: expected bytes (or str for text), got {type(c).__name__}")
    return out


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _to_array(responses: Sequence[encoder_pb2.EmbedResponse], dim: int) -> np.ndarray:
    rows = [np.asarray(e.values, dtype=np.float32) for r in responses for e in r.embeddings]
    return np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)


def _metadata(
    request_id: str | None, extra: Sequence[tuple[str, str]] = ()
) -> tuple[tuple[str, str], ...]:
    return (("x-request-id", request_id or uuid.uuid4().hex[:16]), *extra)


def _extra_metadata(
    application: str | None, metadata: Sequence[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    """``application`` picks the Ray Serve application behind a shared Ray gRPC proxy (e.g.
    "text"); the standalone services ignore it."""
    return (*((("application", application),) if application else ()), *metadata)


class _EncoderClientBase:
    """What the sync and asyncio clients share: settings, metadata and request splitting."""

    def __init__(
        self,
        target: str,
        timeout: float = 60.0,
        batch_size: int = 64,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        application: str | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.batch_size = batch_size
        self.max_message_bytes = max_message_bytes
        self.metadata = _extra_metadata(application, metadata)

    def _call_kwargs(self) -> dict[str, Any]:
        return {"timeout": self.timeout, "metadata": _metadata(None, self.metadata)}

    def _requests(
        self, modality: Modality | str, contents: Sequence[Content], ids: Sequence[str] | None
    ) -> list[encoder_pb2.EmbedRequest]:
        m = Modality.parse(modality)
        items = _items(m, contents, ids)
        return [
            encoder_pb2.EmbedRequest(modality=modality_to_proto(m), items=items[part])
            for part in _chunks(len(items), self.batch_size)
        ]


class EncoderClient(_EncoderClientBase):
    """Blocking client of one encoder service."""

    def __init__(self, target: str, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self._channel = grpc.insecure_channel(
            target, options=channel_options(self.max_message_bytes)
        )
        self.stub = encoder_pb2_grpc.EncoderServiceStub(self._channel)

    def info(self) -> encoder_pb2.InfoResponse:
        return self.stub.Info(encoder_pb2.InfoRequest(), **self._call_kwargs())

    def embed_response(
        self,
        modality: Modality | str,
        contents: Sequence[Content],
        ids: Sequence[str] | None = None,
    ) -> list[encoder_pb2.EmbedResponse]:
        return [
            self.stub.Embed(request, **self._call_kwargs())
            for request in self._requests(modality, contents, ids)
        ]

    def embed(
        self,
        modality: Modality | str,
        contents: Sequence[Content],
        ids: Sequence[str] | None = None,
    ) -> np.ndarray:
        responses = self.embed_response(modality, contents, ids)
        return _to_array(responses, responses[0].dim if responses else 0)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> EncoderClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncEncoderClient(_EncoderClientBase):
    """asyncio client of one encoder service; chunks are sent concurrently."""

    def __init__(self, target: str, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self._channel = grpc.aio.insecure_channel(
            target, options=channel_options(self.max_message_bytes)
        )
        self.stub = encoder_pb2_grpc.EncoderServiceStub(self._channel)

    async def info(self) -> encoder_pb2.InfoResponse:
        return await self.stub.Info(encoder_pb2.InfoRequest(), **self._call_kwargs())

    async def embed(
        self,
        modality: Modality | str,
        contents: Sequence[Content],
        ids: Sequence[str] | None = None,
    ) -> np.ndarray:
        calls = [
            self.stub.Embed(request, **self._call_kwargs())
            for request in self._requests(modality, contents, ids)
        ]
        responses = await asyncio.gather(*calls)
        return _to_array(responses, responses[0].dim if responses else 0)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncEncoderClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
