"""The encoder servicer core: protobuf requests <-> Embedder calls, with every check a request
needs. No gRPC context and no tensor maths here, so the standalone gRPC servicer and the Ray
Serve deployment share it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from synesthesia.errors import InvalidInput, item_error
from synesthesia.modality import Modality
from synesthesia.models.embedder import Embedder, Prepared
from synesthesia.protoconv import modality_from_proto, modality_to_proto, set_floats
from synesthesia.v1 import encoder_pb2


@dataclass
class PreparedRequest:
    prepared: list[Prepared]
    ids: list[str]


class EncoderCore:
    def __init__(
        self,
        embedder: Embedder,
        modality: Modality,
        max_items_per_request: int,
        max_message_bytes: int,
    ) -> None:
        self.embedder = embedder
        self.modality = embedder.check_modality(modality)
        self.max_items = max_items_per_request
        self.max_message_bytes = max_message_bytes
        self.model_id = embedder.info().model_id
        self.dim = embedder.info().dim

    def check_request(self, modality: int, items: Sequence[encoder_pb2.Item]) -> None:
        requested = modality_from_proto(modality)
        if requested is not self.modality:
            raise InvalidInput(
                f"this is the {self.modality.value} encoder; it cannot embed "
                f"{requested.value} (send it to the {requested.value} service)"
            )
        if not items:
            raise InvalidInput("request has no items")
        if len(items) > self.max_items:
            raise InvalidInput(
                f"request has {len(items)} items; the limit is {self.max_items} per request"
            )

    def item_content(self, index: int, item: encoder_pb2.Item) -> Any:
        kind = item.WhichOneof("content")
        if self.modality is Modality.TEXT:
            if kind == "text":
                return item.text
            if kind == "data":
                return item.data  # UTF-8 bytes are accepted too
        elif kind == "data":
            return item.data
        elif kind == "text":
            raise item_error(
                index,
                item.id,
                f"the {self.modality.value} encoder needs file bytes in 'data', got text",
            )
        raise item_error(index, item.id, "item has no content (set 'text' or 'data')")

    def prepare(self, modality: int, items: Sequence[encoder_pb2.Item]) -> PreparedRequest:
        """Validate and decode a whole request; raises InvalidInput naming the first bad item."""
        self.check_request(modality, items)
        prepared = [
            self.embedder.prepare(self.modality, self.item_content(i, it), i, it.id)
            for i, it in enumerate(items)
        ]
        return PreparedRequest(prepared, [it.id for it in items])

    def embeddings(self, req: PreparedRequest, vectors: np.ndarray) -> list[encoder_pb2.Embedding]:
        out = []
        for vec, item_id, p in zip(vectors, req.ids, req.prepared, strict=True):
            embedding = encoder_pb2.Embedding(id=item_id, truncated=p.truncated, windows=p.windows)
            set_floats(embedding, "values", vec)
            out.append(embedding)
        return out

    def embed_response(
        self, req: PreparedRequest, vectors: np.ndarray
    ) -> encoder_pb2.EmbedResponse:
        return encoder_pb2.EmbedResponse(
            model_id=self.model_id, dim=self.dim, embeddings=self.embeddings(req, vectors)
        )

    def stream_response(
        self, req: PreparedRequest, vectors: np.ndarray
    ) -> encoder_pb2.EmbedStreamResponse:
        return encoder_pb2.EmbedStreamResponse(
            model_id=self.model_id, dim=self.dim, embeddings=self.embeddings(req, vectors)
        )

    def info(self) -> encoder_pb2.InfoResponse:
        info = self.embedder.info()
        return encoder_pb2.InfoResponse(
            model_id=info.model_id,
            dim=info.dim,
            modality=modality_to_proto(self.modality),
            model_modalities=[modality_to_proto(m) for m in info.modalities],
            max_items_per_request=self.max_items,
            max_message_bytes=self.max_message_bytes,
            max_text_tokens=info.max_text_tokens if self.modality is Modality.TEXT else 0,
            max_audio_seconds=info.max_audio_seconds if self.modality is Modality.AUDIO else 0.0,
            max_image_pixels=info.max_image_pixels if self.modality is Modality.IMAGE else 0,
        )
