"""Clients of one encoder service (text, image or audio): vectors of many inputs as one float32
[n, dim] array in input order, sent in chunks of ``batch_size`` items."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from synesthesia.client._transport import _AsyncClient, _SyncClient, in_order, item_numbers
from synesthesia.client.inputs import Media, content
from synesthesia.errors import InvalidInput
from synesthesia.modality import Modality
from synesthesia.protoconv import modality_to_proto
from synesthesia.v1 import encoder_pb2, encoder_pb2_grpc


def _encoder_requests(
    modality: Modality | str,
    contents: Sequence[Media],
    ids: Sequence[str] | None,
    batch_size: int,
    sample_rate: int | None,
) -> list[tuple[int, encoder_pb2.EmbedRequest]]:
    """(the caller's number of each chunk's first item, the chunk's request)."""
    m = Modality.parse(modality)
    items = []
    for i, c in enumerate(contents):
        item_id = ids[i] if ids else ""
        try:
            value = content(c, m, sample_rate)
        except InvalidInput as exc:
            err = InvalidInput(f"item {i}: {exc.message}")
            err.index = i
            raise err from None
        if isinstance(value, str):
            items.append(encoder_pb2.Item(text=value, id=item_id))
        else:
            items.append(encoder_pb2.Item(data=value, id=item_id))
    kind = modality_to_proto(m)
    return [
        (i, encoder_pb2.EmbedRequest(modality=kind, items=items[i : i + batch_size]))
        for i in range(0, len(items), batch_size)
    ]


def _to_array(responses: Sequence[encoder_pb2.EmbedResponse], dim: int) -> np.ndarray:
    rows = [e.values for r in responses for e in r.embeddings]
    return np.array(rows, dtype=np.float32) if rows else np.zeros((0, dim), dtype=np.float32)


class _NoProgress:
    """The progress bar of a call that shows none (a tqdm, even disabled, costs ~50 µs)."""

    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


_NO_PROGRESS = _NoProgress()


def _progress(total: int | None, show: bool, what: str) -> Any:
    if not show:
        return _NO_PROGRESS
    from tqdm import tqdm

    return tqdm(total=total, unit="item", desc=what)


class EncoderClient(_SyncClient):
    """Blocking client of one encoder service. Inputs: str for text; for pictures and sounds
    bytes, paths, PIL images or numpy arrays (``synesthesia.client.inputs``)."""

    def __init__(self, target: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(target, *args, **kwargs)
        self.stub = encoder_pb2_grpc.EncoderServiceStub(self._channel)

    def info(self) -> encoder_pb2.InfoResponse:
        return self._invoke(self.stub.Info, encoder_pb2.InfoRequest())

    def embed_response(
        self,
        modality: Modality | str,
        contents: Sequence[Media],
        ids: Sequence[str] | None = None,
        *,
        batch_size: int | None = None,
        sample_rate: int | None = None,
        show_progress: bool = False,
        timeout: float | None = None,
    ) -> list[encoder_pb2.EmbedResponse]:
        requests = _encoder_requests(
            modality, contents, ids, batch_size or self.batch_size, sample_rate
        )
        out = []
        with _progress(len(contents), show_progress, f"embedding {modality}") as bar:
            for start, request in requests:
                with item_numbers(start):
                    out.append(self._invoke(self.stub.Embed, request, timeout))
                bar.update(len(request.items))
        return out

    def embed(
        self,
        modality: Modality | str,
        contents: Sequence[Media],
        ids: Sequence[str] | None = None,
        *,
        batch_size: int | None = None,
        sample_rate: int | None = None,
        show_progress: bool = False,
        timeout: float | None = None,
    ) -> np.ndarray:
        """float32 [len(contents), dim], unit rows in input order. An input the encoder refuses
        raises InvalidInput naming it by its number in ``contents`` (``.index``)."""
        responses = self.embed_response(
            modality,
            contents,
            ids,
            batch_size=batch_size,
            sample_rate=sample_rate,
            show_progress=show_progress,
            timeout=timeout,
        )
        return _to_array(responses, responses[0].dim if responses else self.info().dim)


class AsyncEncoderClient(_AsyncClient):
    """asyncio client of one encoder service; at most ``max_concurrency`` chunks in flight."""

    def __init__(self, target: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(target, *args, **kwargs)
        self.stub = encoder_pb2_grpc.EncoderServiceStub(self._channel)

    async def info(self) -> encoder_pb2.InfoResponse:
        return await self._invoke(self.stub.Info, encoder_pb2.InfoRequest())

    async def embed(
        self,
        modality: Modality | str,
        contents: Sequence[Media],
        ids: Sequence[str] | None = None,
        *,
        batch_size: int | None = None,
        sample_rate: int | None = None,
        show_progress: bool = False,
        timeout: float | None = None,
    ) -> np.ndarray:
        requests = _encoder_requests(
            modality, contents, ids, batch_size or self.batch_size, sample_rate
        )
        with _progress(len(contents), show_progress, f"embedding {modality}") as bar:

            async def one(start: int, request: encoder_pb2.EmbedRequest) -> Any:
                async with self._limit:
                    with item_numbers(start):
                        reply = await self._invoke(self.stub.Embed, request, timeout)
                bar.update(len(request.items))
                return reply

            responses = await in_order([one(s, r) for s, r in requests])
        return _to_array(responses, responses[0].dim if responses else (await self.info()).dim)
